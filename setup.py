import re

from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()
# igor/version.py is the one place the version is written (importing igor here would need its dependencies).
with open("igor/version.py", encoding="utf-8") as f:
    version = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.MULTILINE).group(1)

setup(
    name="igor",
    version=version,
    description="Use a Python backend from a web-based desktop UI over one localhost WebSocket.",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["igor", "igor.*"]),
    # PEP 561: the package's annotations are meant for its users' type checkers.
    package_data={"igor": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=["websocket-server==0.6.4"],
    extras_require={
        # The Python client; the tests use it too.
        # websocket-client 1.9 needs Python 3.10; 1.8.0 is the last for 3.9.
        "client": [
            "websocket-client==1.9.2; python_version>='3.10'",
            "websocket-client==1.8.0; python_version<'3.10'",
        ],
        # numpy unmasks large messages about 30 times faster than the standard library can (31.7x measured);
        # orjson writes long strings about twice as fast as json (messages are parsed by json).
        "speedups": [
            "numpy==2.4.6; python_version>='3.11'",
            "numpy==2.0.2; python_version<'3.11'",
            "orjson==3.11.5",
        ],
        # Freezes a backend into one folder for a packaged app (igor freeze, examples/electron/freeze.py).
        "freeze": ["pyinstaller==6.22.3"],
        # bench/peers.py: the servers Igor is measured against, its client, and the chart. Python 3.11+.
        "bench": [
            "websocket-client==1.9.2",
            "websockets==17.4",
            "python-socketio==5.18.1",
            "python-engineio==4.15.1",
            "simple-websocket==1.1.0",
            "wsproto==1.3.2",
            "werkzeug==3.1.8",
            "matplotlib==3.11.2",
        ],
        "test": [
            "numpy==2.4.6; python_version>='3.11'",
            "numpy==2.0.2; python_version<'3.11'",
            "orjson==3.11.5",
            "websocket-client==1.9.2; python_version>='3.10'",
            "websocket-client==1.8.0; python_version<'3.10'",
            "pytest==9.0.3; python_version>='3.10'",
            "pytest==8.3.5; python_version<'3.10'",
            "hypothesis==6.155.2; python_version>='3.10'",
            "hypothesis==6.113.0; python_version<'3.10'",
            "ruff==0.17.6",
            # test/test_client_typing.py; skipped where it is missing (mypy 2.4 needs Python 3.10).
            "mypy==2.4.1; python_version>='3.10'",
        ],
    },
    entry_points={"console_scripts": ["igor = igor.__main__:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
    ],
)
