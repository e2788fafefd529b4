# Colab: install smallunet from the repository if it is missing (does nothing elsewhere).
import importlib.util, subprocess, sys
REPO = "https://github.com/smallunet/smallunet"
if "google.colab" in sys.modules and importlib.util.find_spec("smallunet") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", f"smallunet[book] @ git+{REPO}.git@main"])
