"""The CPU allocator setting: freed memory stays in the process, so re-allocating a large tensor does not fault."""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from leangen.utils.allocator import retain_freed_cpu_memory, cpu_allocator_state
    applied = retain_freed_cpu_memory() if sys.argv[1] == "retain" else False
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def forward_like():  # a chain of 64 MiB activations, each freed once the next exists
        x = torch.ones(2 ** 24)
        for _ in range(4):
            x = x * 2
    rounds = []
    for _ in range(8):  # the heap reaches its steady state within a few rounds
        f0 = faults(); forward_like(); rounds.append(faults() - f0)
    print(applied, cpu_allocator_state(), max(rounds[-3:]))
""")


def _run(mode: str, env_value: str | None = None) -> tuple[str, str, int]:
    env = dict(os.environ)
    env.pop("LEANGEN_CPU_ALLOCATOR", None)
    if env_value is not None:
        env["LEANGEN_CPU_ALLOCATOR"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env, check=True)
    applied, state, faults = out.stdout.split()
    return applied, state, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_retained_memory_removes_page_faults_on_reallocation() -> None:
    applied, state, faults_retain = _run("retain")
    assert (applied, state) == ("True", "retain")
    _, state_default, faults_default = _run("default")
    assert state_default == "default"
    # 5 x 64 MiB freshly mapped per round = ~80k faults with the defaults; retained memory is reused.
    assert faults_default > 40_000
    assert faults_retain < 1_000


def test_env_var_disables_it() -> None:
    applied, state, _ = _run("retain", env_value="default")
    assert (applied, state) == ("False", "default")
