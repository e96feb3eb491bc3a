from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.environment import (
    Paths,
    ServerSettings,
    cpu_count,
    threads_per_worker,
)


def test_paths_follow_sagemaker_base_dir() -> None:
    paths = Paths.from_env({"SAGEMAKER_BASE_DIR": "/tmp/ml"})
    assert paths.hyperparameters == Path("/tmp/ml/input/config/hyperparameters.json")
    assert paths.channel("training") == Path("/tmp/ml/input/data/training")
    assert paths.model == Path("/tmp/ml/model")
    assert paths.failure == Path("/tmp/ml/output/failure")
    assert paths.output_data == Path("/tmp/ml/output/data")


def test_paths_default_to_opt_ml() -> None:
    assert Paths.from_env({}).model == Path("/opt/ml/model")


def test_server_settings_defaults() -> None:
    settings = ServerSettings.from_env({})
    assert settings.port == 8080
    assert settings.timeout == 60
    assert settings.read_timeout == 20
    assert settings.max_payload_bytes == 6 * 1024 * 1024
    assert settings.workers >= 1


def test_server_settings_from_sagemaker_variables() -> None:
    settings = ServerSettings.from_env(
        {
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "120",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
        }
    )
    assert (settings.port, settings.workers, settings.timeout) == (9090, 3, 120)
    assert settings.max_payload_bytes == 20 * 1024 * 1024


def test_the_server_backstop_waits_beyond_the_request_timeout() -> None:
    # nginx's proxy_read_timeout, gunicorn's timeout, uvicorn's worker health check.
    assert ServerSettings.from_env({}).backstop_timeout == 70
    assert ServerSettings.from_env({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "5"}).backstop_timeout == 15


def test_read_timeout_from_its_variable() -> None:
    assert ServerSettings.from_env({"MODEL_SERVER_READ_TIMEOUT": "5"}).read_timeout == 5
    with pytest.raises(ValueError, match="MODEL_SERVER_READ_TIMEOUT"):
        ServerSettings.from_env({"MODEL_SERVER_READ_TIMEOUT": "0"})


def test_chunked_batch_payload_is_capped_at_100_mb() -> None:
    settings = ServerSettings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"})
    assert settings.max_payload_bytes == 100 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "many"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "0"),
        ("SAGEMAKER_BIND_TO_PORT", "80.5"),
    ],
)
def test_bad_server_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        ServerSettings.from_env({name: value})


def test_threads_are_shared_out_between_workers() -> None:
    cpus = cpu_count()
    assert threads_per_worker({"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}) == cpus
    assert threads_per_worker({"SAGEMAKER_MODEL_SERVER_WORKERS": str(cpus * 4)}) == 1


FREED_BLOCKS = """
import ctypes, sys
from {{ cookiecutter.package_name }}.environment import give_back_freed_memory

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(4096) for _ in range(50_000)]  # 200 MB of heap, not mmapped
for block in blocks:
    ctypes.memset(block, 1, 4096)
keep = blocks.pop()  # the heap's top stays in use: only a trim can give the rest back
for block in blocks:
    libc.free(block)
before = rss()
assert give_back_freed_memory()
print(before, rss())
"""


def test_freed_heap_memory_goes_back_to_the_system() -> None:
    """What the master's model load freed (before it forks the workers) leaves the process."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FREED_BLOCKS], capture_output=True, text=True, check=True
    )
    before, after = map(int, done.stdout.split())
    assert before - after > 150, (before, after)
