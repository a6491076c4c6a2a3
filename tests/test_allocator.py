"""The CPU allocator setting: freed memory stays in the process, so re-allocating a large tensor does not fault.

Two views, both robust to a loaded machine:
- the allocator's own state (glibc ``mallinfo2``): with the setting, a 64 MiB tensor is served from the heap (not a
  private ``mmap``) and its memory stays in the heap after it is freed; without it, the tensor is ``mmap``-ed and
  unmapped on free. Exact byte counts, independent of timing.
- page faults per steady-state round of a forward-like loop, as a ratio of the two paths; the minimum over the last
  rounds, because a loaded kernel can add minor faults to any one round (NUMA-balancing hinting faults, reclaim).
"""
import ctypes
import functools
import json
import os
import subprocess
import sys
import textwrap

import pytest

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")

SCRIPT = textwrap.dedent("""
    import ctypes, json, resource, sys, torch
    from leangen.utils.allocator import retain_freed_cpu_memory, cpu_allocator_state
    applied = retain_freed_cpu_memory() if sys.argv[1] == "retain" else False

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    def heap():
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "mallinfo2"):
            return None
        libc.mallinfo2.restype = MallInfo2
        m = libc.mallinfo2()
        return {"mmapped": m.hblkhd, "arena": m.arena, "free": m.fordblks}

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def forward_like():  # a chain of 64 MiB activations, each freed once the next exists
        x = torch.ones(2 ** 24)
        for _ in range(4):
            x = x * 2

    before = heap()
    t = torch.empty(2 ** 24)  # 64 MiB
    alive = heap()
    del t
    freed = heap()
    rounds = []
    for _ in range(10):  # the heap reaches its steady state within a few rounds
        f0 = faults(); forward_like(); rounds.append(faults() - f0)
    print(json.dumps({"applied": applied, "state": cpu_allocator_state(), "rounds": rounds,
                      "heap": None if before is None else [before, alive, freed]}))
""")
MIB64 = 64 << 20


@functools.lru_cache(maxsize=None)  # one subprocess per mode for the whole module
def _run(mode: str, env_value: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("LEANGEN_CPU_ALLOCATOR", None)
    if env_value is not None:
        env["LEANGEN_CPU_ALLOCATOR"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env, check=True,
                         timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


@linux_only
def test_retained_memory_is_served_from_the_heap_and_kept_after_free() -> None:
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc < 2.33: no mallinfo2")
    retain, default = _run("retain"), _run("default")
    assert (retain["applied"], retain["state"]) == (True, "retain") and default["state"] == "default"
    before, alive, freed = retain["heap"]
    assert alive["mmapped"] == before["mmapped"]            # not a private mapping ...
    assert alive["arena"] - before["arena"] >= MIB64 - before["free"]  # ... but heap (grown by what was missing)
    assert freed["arena"] == alive["arena"] and freed["free"] >= MIB64  # freed, and still the process's
    before, alive, freed = default["heap"]
    assert alive["mmapped"] - before["mmapped"] >= MIB64    # glibc's default: above the threshold, mmap-ed
    assert freed["mmapped"] == before["mmapped"]            # and unmapped on free


@linux_only
def test_retained_memory_removes_page_faults_on_reallocation() -> None:
    retain, default = _run("retain"), _run("default")
    assert (retain["applied"], retain["state"]) == (True, "retain") and default["state"] == "default"
    steady_retain, steady_default = min(retain["rounds"][-4:]), min(default["rounds"][-4:])
    # 5 x 64 MiB freshly mapped per default round: ~80k faults with 4 KiB pages, >= 160 even with 2 MiB huge pages.
    assert steady_default >= 160
    assert steady_retain * 20 <= steady_default, (retain["rounds"], default["rounds"])


def test_env_var_disables_it() -> None:
    out = _run("retain", env_value="default")
    assert (out["applied"], out["state"]) == (False, "default")
