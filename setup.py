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

from glob import glob

from setuptools import find_packages, setup

package_name = 'depthgate_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')),
    ],
    package_data={package_name + '.weights': ['*.pt']},
    install_requires=['setuptools', 'numpy', 'pyyaml'],
    zip_safe=False,
    maintainer='depthgate_ros maintainers',
    maintainer_email='depthgate-ros@example.com',
    description='Depth-gated recurrent scene parsing (CVPR 2018) for ROS 2',
    license='Apache-2.0',
    python_requires='>=3.10',
    entry_points={
        'console_scripts': [
            'depthgate-demo = depthgate_ros.cli.demo:main',
            'depthgate-synthetic = depthgate_ros.cli.make_synthetic:main',
            'depthgate-train = depthgate_ros.cli.train:main',
            'depthgate-eval = depthgate_ros.cli.evaluate:main',
            'depthgate-ablation = depthgate_ros.cli.ablation:main',
            'depthgate-head-ablation = depthgate_ros.cli.head_ablation:main',
            'perception_node = depthgate_ros.node.perception_node:main',
            'perception_lifecycle_node = depthgate_ros.node.perception_lifecycle_node:main',
            'depthgate-bag-eval = depthgate_ros.cli.bag_eval:main',
            'depthgate-make-bag = depthgate_ros.cli.make_bag:main',
            'depthgate-pack-model = depthgate_ros.cli.pack_model:main',
            'depthgate-export = depthgate_ros.cli.export:main',
            'depthgate-bench = depthgate_ros.cli.bench:main',
        ],
    },
)
