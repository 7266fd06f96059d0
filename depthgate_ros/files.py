# Copyright 2026 depthgate_ros maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.


"""What is written through a private temporary file or folder, then renamed: modes, folders."""
from __future__ import annotations

from contextlib import contextmanager
import os
from pathlib import Path
import shutil
import tempfile


def umask() -> int:
    """Return the process umask: reading it means setting it, so it is set back at once."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_mode(directory: bool = False) -> int:
    """
    Return the mode open() or mkdir() would give a new file or folder: 0666 or 0777 less the umask.

    mkstemp and mkdtemp make theirs private (0600, 0700), and what they become (a model, a
    report) is read by others: the node often runs as another user.
    """
    return (0o777 if directory else 0o666) & ~umask()


class FolderExists(ValueError):
    """The output folder of a run is there already: a run never writes into an old one."""


@contextmanager
def staged_folder(out: str | Path):
    """
    Yield a new folder beside `out` that is renamed to `out` when the block ends without error.

    A run that fails or is interrupted leaves no `out` (and a killed one only a hidden
    `.name.*` folder), so a folder called `out` always holds a whole run's output.
    """
    out = Path(out)
    if out.exists():
        raise FolderExists(f'{out} exists; choose a new --out folder')
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
    try:
        work.chmod(public_mode(directory=True))
        yield work
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
