from flowd.cli import main
from flowd.procexit import exit_process

exit_process(main())
