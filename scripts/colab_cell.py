# Colab: clone the repository, install smallunet from it, work in its chapters/ (does nothing elsewhere).
import importlib.util, os, subprocess, sys
REPO, BRANCH, CLONE = "https://github.com/smallunet/smallunet", "main", "/content/smallunet"
if "google.colab" in sys.modules:
    if not os.path.isdir(CLONE):
        subprocess.check_call(["git", "clone", "-q", "--depth", "1", "--branch", BRANCH, f"{REPO}.git", CLONE])
    if importlib.util.find_spec("smallunet") is None:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", f"{CLONE}[book]"])
    os.chdir(os.path.join(CLONE, "chapters"))   # as in a checkout: ../bench holds the recorded results
