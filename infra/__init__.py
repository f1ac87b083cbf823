"""The local stack: installs nothing itself (see install.sh), configures and runs it all.

``python -m infra up`` renders configuration into the state folder, starts
supervisord with Kafka, FerretDB and JupyterHub, waits until each answers,
creates the Kafka topics, then starts the three services. ``down`` stops
everything and checks that no process and no port is left behind.
"""
