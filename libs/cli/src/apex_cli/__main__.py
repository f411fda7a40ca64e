from apex_cli.main import entrypoint

entrypoint()
