from apex_runtime import run_process
from apex_tools.bootstrap import main

run_process(main)
