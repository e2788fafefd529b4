"""The reading path (issue 23, point 1): the functions the chapters send readers to open
with the algorithm, their argument checks one call away in a checking function beside
them (no raise in their own body), every line within the page's 76 columns; the CPU
speed tricks live in smallunet/cpu_speedups.py and the model keeps the plain forms."""
import ast
import inspect
import textwrap

import pytest

import smallunet
from smallunet import (Attention, CondEmbedderLabel, Schedule, ScheduleLogLinear, SigmaEmbedderSinCos,
                       Unet, get_sigma_embeds, training_loop)
from smallunet.fast_trainer import Trainer

READ = {
    "training_loop": training_loop, "Unet.forward": Unet.forward, "Unet.embed": Unet.embed,
    "Unet.__init__": Unet.__init__, "Schedule.__init__": Schedule.__init__,
    "Schedule.sample_sigmas": Schedule.sample_sigmas, "ScheduleLogLinear.__init__": ScheduleLogLinear.__init__,
    "get_sigma_embeds": get_sigma_embeds, "SigmaEmbedderSinCos.forward": SigmaEmbedderSinCos.forward,
    "CondEmbedderLabel.forward": CondEmbedderLabel.forward, "Attention.forward": Attention.forward,
    "Trainer.train_step": Trainer.train_step,
}


@pytest.mark.parametrize("name", sorted(READ))
def test_the_algorithm_first_and_its_checks_one_call_away(name):
    source = textwrap.dedent(inspect.getsource(READ[name]))
    raises = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Raise)]
    assert not raises, f"{name} raises in its own body (line {raises[0].lineno}); move the check beside it"
    if name != "Unet.__init__":                  # the chapters print these
        wide = [line for line in inspect.getsource(READ[name]).splitlines() if len(line) > 76]
        assert not wide, wide


def test_training_loop_holds_its_loop_in_its_own_body():
    source = inspect.getsource(training_loop)
    assert "for epoch in range(epochs):" in source and "loss.backward()" in source
    assert "_check_training_loop(" in source


def test_the_cpu_speed_tricks_live_in_one_module():
    attention_forward = inspect.getsource(Attention.forward)
    assert "use_explicit_attention" not in attention_forward and "softmax_weights" not in attention_forward
    for module in ("attention", "unet", "resnet", "fast_trainer"):
        text = inspect.getsource(getattr(smallunet, module))
        for trick in ("class FastDropout", "def keep_mask", "EXPLICIT_MAX_TOKENS =", "def use_explicit_attention"):
            assert trick not in text, (module, trick)
    text = inspect.getsource(smallunet.cpu_speedups)
    assert all(t in text for t in ("class FastDropout", "def use_explicit_attention", "def scaled_dot_product_attention"))
