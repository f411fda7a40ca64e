from apex_ingest.bootstrap import main
from apex_runtime import run_process

run_process(main)
