"""JaxMARL, imported quietly: jaxmarl 0.2.0 prints "Importing submoduled environments..." to
stdout on import, which would mix into the JSON that the bench scripts print. Import JaxMARL
through this module (or after it) to send those lines to stderr."""
import sys

# Its MaBrax module sets sys.stdout back to sys.__stdout__ during the import, which undoes
# contextlib.redirect_stdout; so both point at stderr until the import is done.
_stdout, _dunder_stdout = sys.stdout, sys.__stdout__
sys.stdout = sys.__stdout__ = sys.stderr
try:
    import jaxmarl
    from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario
finally:
    sys.stdout, sys.__stdout__ = _stdout, _dunder_stdout

__all__ = ["jaxmarl", "HeuristicEnemySMAX", "map_name_to_scenario"]
