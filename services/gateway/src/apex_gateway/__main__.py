from apex_gateway.app import main
from apex_runtime import run_process

run_process(main)
