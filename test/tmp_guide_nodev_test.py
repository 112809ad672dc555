import test_guide
orig = test_guide.guide_steps
test_guide.guide_steps = lambda: [s for s in orig() if not (s[0] == "run" and s[1].startswith("python -m igor dev"))]
from test_guide import *  # noqa
