"""scripts/sagemaker.py against moto's ECR and SageMaker, and botocore's Stubber where moto
has no such call (UpdateEndpoint, a failing training job). Docker is a fake: the commands
are checked, not run. No network: fake credentials, every AWS call mocked."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from moto import mock_aws

from {{ cookiecutter.package_name }}.job import metric_definitions
from {{ cookiecutter.package_name }}.training import all_metrics

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sagemaker.py"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ACCOUNT = "123456789012"  # moto's account


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("sagemaker_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sm = load_script()
REGION = sm.DEFAULT_REGION
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
IMAGE_URI = f"{REGISTRY}/{sm.PROJECT}:latest"
SERVICES = botocore.session.get_session()


def check_shape(service: str, operation: str, request: dict[str, Any]) -> None:
    """The request has the fields, types and enums of the AWS API (botocore's model)."""
    shape = SERVICES.get_service_model(service).operation_model(operation).input_shape
    validate_parameters(request, shape)


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, no region or role from the caller's environment, no config files."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "SAGEMAKER_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def docker_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], str | None]]:
    """Replaces subprocess.run: records (command, stdin) instead of running Docker."""
    calls: list[tuple[list[str], str | None]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((list(command), kwargs.get("input")))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(sm.subprocess, "run", fake_run)
    return calls


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every (operation, parameters) the script sends, as boto3 sends them."""
    calls: list[tuple[str, dict[str, Any]]] = []
    real_session = sm.session

    def record(params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        calls.append((model.name, dict(params)))

    def recording_session(args: Any) -> Any:
        session = real_session(args)
        session.events.register("before-parameter-build", record)
        return session

    monkeypatch.setattr(sm, "session", recording_session)
    return calls


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach AWS fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("AWS was called")

    monkeypatch.setattr(sm, "session", refuse)
    monkeypatch.setattr(sm.boto3, "client", refuse)
    monkeypatch.setattr(sm.boto3.session, "Session", refuse)


def train_args(*extra: str) -> list[str]:
    return [
        "train",
        "--role-arn",
        ROLE,
        "--channel",
        "training=s3://bucket/iris/",
        "--content-type",
        "training=text/csv",
        "--output",
        "s3://bucket/jobs",
        *extra,
    ]


def request(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "name": "iris-2024-01-01-00-00-00-000",
        "image": IMAGE_URI,
        "role_arn": ROLE,
        "channels": {"training": "s3://bucket/iris/"},
        "output_s3": "s3://bucket/jobs",
        "hyperparameters": sm.job_hyperparameters(),
        "metric_definitions": sm.project_metric_definitions(),
        **overrides,
    }
    return sm.training_job_request(**arguments)


# ---------------------------------------------------------------- the script and its options


def test_script_is_an_executable_python_script() -> None:
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    assert os.access(SCRIPT, os.X_OK)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in ("push", "train", "deploy", "invoke"):
        assert command in result.stdout


def test_region_from_option_then_environment_then_project_default() -> None:
    environ = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-2"}
    assert sm.resolve_region("ap-south-1", environ) == "ap-south-1"
    assert sm.resolve_region(None, environ) == "eu-west-1"
    assert sm.resolve_region(None, {"AWS_DEFAULT_REGION": "eu-west-2"}) == "eu-west-2"
    assert sm.resolve_region(None, {}) == "{{ cookiecutter.aws_region }}"


def test_unique_names_fit_sagemaker_limits() -> None:
    name = sm.unique_name("a" * 38, now=0.5)
    assert name == "a" * 38 + "-1970-01-01-00-00-00-500"
    assert len(name) <= 63


def test_pairs_need_an_equals_sign() -> None:
    assert sm.parse_pairs(["a=1", "b=x=y"], "--set") == {"a": "1", "b": "x=y"}
    with pytest.raises(sm.UsageError, match="--set 'oops'"):
        sm.parse_pairs(["oops"], "--set")


# ---------------------------------------------------------------- push


def test_push_creates_the_repository_logs_in_tags_and_pushes(
    aws: None, docker_calls: list[tuple[list[str], str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert sm.main(["push"]) == 0
    assert capsys.readouterr().out.strip() == IMAGE_URI
    ecr = boto3.client("ecr", region_name=REGION)
    (repository,) = ecr.describe_repositories()["repositories"]
    assert repository["repositoryName"] == sm.PROJECT
    assert docker_calls == [
        (
            ["docker", "login", "--username", "AWS", "--password-stdin", REGISTRY],
            f"{ACCOUNT}-auth-token",  # moto's token is base64("AWS:<this>")
        ),
        (["docker", "tag", f"{sm.PROJECT}:latest", IMAGE_URI], None),
        (["docker", "push", IMAGE_URI], None),
    ]


def test_push_reuses_the_repository_and_honours_region_and_tag(
    aws: None, docker_calls: list[tuple[list[str], str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    ecr = boto3.client("ecr", region_name="eu-west-1")
    ecr.create_repository(repositoryName="models")
    argv = ["--region", "eu-west-1", "push", "--repository", "models", "--tag", "v2"]
    assert sm.main([*argv, "--image", "local"]) == 0
    uri = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/models:v2"
    assert capsys.readouterr().out.strip() == uri
    assert len(ecr.describe_repositories()["repositories"]) == 1
    assert [command for command, _ in docker_calls][1:] == [
        ["docker", "tag", "local:v2", uri],
        ["docker", "push", uri],
    ]


def test_push_fails_when_docker_fails(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing_run(command: list[str], **kwargs: Any) -> None:
        raise subprocess.CalledProcessError(1, command)

    monkeypatch.setattr(sm.subprocess, "run", failing_run)
    assert sm.main(["push"]) == 1
    assert "docker" in capsys.readouterr().err


def test_ecr_authorization_is_decoded() -> None:
    token = base64.b64encode(b"AWS:secret:with:colons").decode()
    data = {"authorizationToken": token, "proxyEndpoint": f"https://{REGISTRY}"}
    assert sm.decode_authorization(data) == ("AWS", "secret:with:colons", REGISTRY)


# ---------------------------------------------------------------- the training request


def test_training_request_matches_the_api_and_the_project() -> None:
    built = request(content_types={"training": "text/csv"})
    check_shape("sagemaker", "CreateTrainingJob", built)
    algorithm = built["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == IMAGE_URI
    assert algorithm["TrainingInputMode"] == "File"
    assert algorithm["MetricDefinitions"] == metric_definitions(all_metrics())
    assert all(isinstance(value, str) for value in built["HyperParameters"].values())
    declared = json.loads((SCRIPT.parents[1] / "hyperparameters.json").read_text())
    assert built["HyperParameters"] == declared
    (channel,) = built["InputDataConfig"]
    assert channel["ChannelName"] == "training"
    assert channel["ContentType"] == "text/csv"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == "s3://bucket/iris/"
    assert built["EnableManagedSpotTraining"] is False
    assert "MaxWaitTimeInSeconds" not in built["StoppingCondition"]
    assert "CheckpointConfig" not in built


def test_typed_values_in_hyperparameters_json_are_sent_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "hyperparameters.json"
    path.write_text(json.dumps({"validation_fraction": 0.25}))
    values = sm.job_hyperparameters(path, {"sagemaker_region": "x"})
    assert values == {"validation_fraction": "0.25", "sagemaker_region": "x"}


def test_spot_training_sets_max_wait_and_checkpoints() -> None:
    built = request(spot=True, max_run_seconds=3600, checkpoint_s3="s3://bucket/ckpt")
    check_shape("sagemaker", "CreateTrainingJob", built)
    assert built["EnableManagedSpotTraining"] is True
    assert built["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 3600,
    }
    assert built["CheckpointConfig"] == {
        "S3Uri": "s3://bucket/ckpt",
        "LocalPath": "/opt/ml/checkpoints",
    }
    longer = request(spot=True, max_run_seconds=3600, max_wait_seconds=7200)
    assert longer["StoppingCondition"]["MaxWaitTimeInSeconds"] == 7200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"channels": {"validation": "s3://b/v"}}, "'training' channel is required"),
        ({"content_types": {"test": "text/csv"}}, "does not have: \\['test'\\]"),
        ({"channels": {"training": "/local/path"}}, "not an s3:// URI"),
        ({"output_s3": "bucket/jobs"}, "--output"),
        ({"spot": True, "max_run_seconds": 3600, "max_wait_seconds": 60}, "--max-wait"),
        ({"max_wait_seconds": 60}, "--spot"),
        ({"instance_count": 0}, "--instance-count"),
    ],
)
def test_training_request_refuses_what_aws_would(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(sm.UsageError, match=message):
        request(**overrides)


def test_dry_run_prints_the_request_as_json_and_calls_nothing(
    no_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = train_args("--dry-run", "--spot", "--set", "validation_fraction=0.3")
    assert sm.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    check_shape("sagemaker", "CreateTrainingJob", printed)
    assert printed["HyperParameters"]["validation_fraction"] == "0.3"
    assert all(isinstance(value, str) for value in printed["HyperParameters"].values())
    assert printed["AlgorithmSpecification"]["TrainingImage"] == (
        f"ACCOUNT_ID.dkr.ecr.{REGION}.amazonaws.com/{sm.PROJECT}:latest"
    )
    stopping = printed["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    name = printed["TrainingJobName"]
    assert name.startswith(f"{sm.PROJECT}-")
    # Spot without --checkpoint-s3: checkpoints next to the job's output, so it can resume.
    assert printed["CheckpointConfig"]["S3Uri"] == f"s3://bucket/jobs/{name}/checkpoints"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("no_such_hyperparameter=1", "no_such_hyperparameter"),
        ("validation_fraction=abc", "validation_fraction"),
        ("validation_fraction=1.5", "validation_fraction"),
    ],
)
def test_a_bad_hyperparameter_fails_before_any_aws_call(
    no_aws: None, capsys: pytest.CaptureFixture[str], setting: str, named: str
) -> None:
    assert sm.main(train_args("--set", setting)) == 2
    err = capsys.readouterr().err
    assert f"'{named}'" in err
    assert err.startswith("error: ")


def test_role_is_required(no_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [arg for arg in train_args() if arg not in ("--role-arn", ROLE)]
    assert sm.main(argv) == 2
    assert "--role-arn" in capsys.readouterr().err


# ---------------------------------------------------------------- options checked before AWS


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """No AWS credentials anywhere: no AWS_* variables, empty config and credentials files,
    no instance role. Returns the environment, for the script run as a process."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        empty = tmp_path / name.lower()
        empty.touch()
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return dict(os.environ)


def without(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option`` and its value."""
    at = argv.index(option)
    return argv[:at] + argv[at + 2 :]


def replaced(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option``'s value replaced (the option is added if absent)."""
    return [*without(argv, option), option, value] if option in argv else [*argv, option, value]


DEPLOY = ["deploy", "--role-arn", ROLE, "--training-job", "job"]
INVOKE = ["invoke", "--endpoint-name", "endpoint"]
OPTION_CASES = [
    (replaced(train_args(), "--role-arn", ""), "--role-arn"),
    (replaced(train_args(), "--role-arn", "SageMakerRole"), "--role-arn"),
    (replaced(train_args(), "--channel", "training="), "--channel training"),
    (replaced(train_args(), "--channel", "training=bucket/iris/"), "--channel training"),
    (replaced(train_args(), "--channel", "training=s3://"), "--channel training"),
    (replaced(train_args(), "--channel", "training"), "--channel"),
    (without(without(train_args(), "--channel"), "--content-type"), "--channel training"),
    (replaced(train_args(), "--output", ""), "--output"),
    (replaced(train_args(), "--output", "s3:/bucket/jobs"), "--output"),
    (train_args("--set", "validation_fraction"), "--set"),
    (train_args("--set", "validation_fraction="), "validation_fraction"),
    (train_args("--job-name", ""), "--job-name"),
    (train_args("--job-name", "my_job"), "--job-name"),
    (train_args("--instance-type", ""), "--instance-type"),
    (train_args("--instance-count", "0"), "--instance-count"),
    (train_args("--spot", "--checkpoint-s3", ""), "--checkpoint-s3"),
    (train_args("--repository", ""), "--repository"),
    (train_args("--tag", ""), "--tag"),
    (["--region", "us-east", *train_args()], "--region"),
    (replaced(DEPLOY, "--role-arn", ""), "--role-arn"),
    (replaced(DEPLOY, "--training-job", ""), "--training-job"),
    (replaced(without(DEPLOY, "--training-job"), "--model-data", ""), "--model-data"),
    (replaced(without(DEPLOY, "--training-job"), "--model-data", "model.tar.gz"), "--model-data"),
    ([*DEPLOY, "--endpoint-name", ""], "--endpoint-name"),
    ([*DEPLOY, "--model-name", ""], "--model-name"),
    ([*DEPLOY, "--instance-type", "m5.large"], "--instance-type"),
    ([*DEPLOY, "--instance-count", "0"], "--instance-count"),
    (replaced(INVOKE, "--endpoint-name", ""), "--endpoint-name"),
    ([*INVOKE, "--body", "no-such-file.csv"], "--body"),
    ([*INVOKE, "--content-type", ""], "--content-type"),
    (["push", "--image", ""], "--image"),
    (["push", "--repository", ""], "--repository"),
    (["push", "--tag", ""], "--tag"),
]


@pytest.mark.parametrize(
    ("argv", "option"),
    OPTION_CASES,
    ids=[f"{n}{option}" for n, (_, option) in enumerate(OPTION_CASES)],
)
def test_a_missing_or_malformed_option_is_named_before_any_aws_call(
    no_credentials: dict[str, str],
    no_aws: None,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    option: str,
) -> None:
    assert sm.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert option in err
    assert "credentials" not in err


# What `make train-aws` and `make deploy` run, with what is not set on make's command line
# empty; each run names the first option that is missing.
MAKE_TRAIN_AWS = [
    "train", "--repository", sm.PROJECT, "--tag", "latest", "--role-arn", "",
    "--channel", "training=", "--content-type", "training=text/csv",
    "--output", "", "--instance-type", "ml.m5.large", "--wait",
]  # fmt: skip
MAKE_DEPLOY = [
    "deploy", "--repository", sm.PROJECT, "--tag", "latest", "--role-arn", "",
    "--training-job", "", "--endpoint-name", sm.PROJECT, "--instance-type", "ml.m5.large",
    "--wait",
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (MAKE_TRAIN_AWS, "--role-arn"),
        (replaced(MAKE_TRAIN_AWS, "--role-arn", ROLE), "--channel training"),
        (
            replaced(
                replaced(MAKE_TRAIN_AWS, "--role-arn", ROLE), "--channel", "training=s3://b/"
            ),
            "--output",
        ),
        (MAKE_DEPLOY, "--role-arn"),
        (replaced(MAKE_DEPLOY, "--role-arn", ROLE), "--training-job"),
    ],
    ids=["train-role", "train-channel", "train-output", "deploy-role", "deploy-job"],
)
def test_the_script_without_credentials_names_the_missing_option(
    no_credentials: dict[str, str], argv: list[str], option: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        env=no_credentials,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert option in result.stderr
    assert "credentials" not in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- training on (moto's) SageMaker


def test_train_creates_the_job_and_waits_for_it(
    aws: None,
    docker_calls: list[tuple[list[str], str | None]],
    sent: list[tuple[str, dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sm.main(["push"]) == 0
    capsys.readouterr()
    argv = train_args("--set", "validation_fraction=0.3", "--instance-type", "ml.c5.xlarge")
    argv += ["--channel", "validation=s3://bucket/valid/", "--wait", "--poll", "0"]
    assert sm.main(argv) == 0
    name, artifacts = capsys.readouterr().out.split()
    assert artifacts == f"s3://bucket/jobs/{name}/output/model.tar.gz"

    (created,) = [params for operation, params in sent if operation == "CreateTrainingJob"]
    assert created["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions(
        all_metrics()
    )
    client = boto3.client("sagemaker", region_name=REGION)
    job = client.describe_training_job(TrainingJobName=name)
    assert job["TrainingJobStatus"] == "Completed"
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE_URI
    assert job["RoleArn"] == ROLE
    assert job["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    assert job["HyperParameters"]["validation_fraction"] == "0.3"
    assert all(isinstance(value, str) for value in job["HyperParameters"].values())
    channels = {channel["ChannelName"]: channel for channel in job["InputDataConfig"]}
    assert channels["training"]["ContentType"] == "text/csv"
    assert "ContentType" not in channels["validation"]


def test_train_without_a_pushed_image_says_so(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sm.main(train_args()) == 2
    assert "make push" in capsys.readouterr().err


def stubbed_session(monkeypatch: pytest.MonkeyPatch, service: str) -> Stubber:
    """``sm.session`` hands out one client of ``service`` whose answers the test stubs."""
    client = boto3.client(service, region_name=REGION)
    stubber = Stubber(client)
    stubber.activate()

    class Session:
        def client(self, name: str) -> Any:
            assert name == service
            return client

    monkeypatch.setattr(sm, "session", lambda args: Session())
    return stubber


def training_job(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "TrainingJobName": "job",
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/job",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://bucket/jobs/job/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": "Training" if status == "InProgress" else status,
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "CreationTime": 0,
        **fields,
    }


def test_a_failed_job_prints_its_failure_reason_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stubber = stubbed_session(monkeypatch, "sagemaker")
    arn = {"TrainingJobArn": training_job("InProgress")["TrainingJobArn"]}
    sent = request(name="job", content_types={"training": "text/csv"})
    stubber.add_response("create_training_job", arn, sent)
    reason = "AlgorithmError: hyperparameter 'epochs' must be >= 1"
    for answer in (
        training_job("InProgress"),
        training_job("Failed", FailureReason=reason),
    ):
        stubber.add_response("describe_training_job", answer, {"TrainingJobName": "job"})
    argv = train_args("--image", IMAGE_URI, "--job-name", "job", "--wait", "--poll", "0")
    assert sm.main(argv) == 1
    stubber.assert_no_pending_responses()
    captured = capsys.readouterr()
    assert captured.out.strip() == "job"
    assert reason in captured.err
    assert "job: InProgress / Training" in captured.err


# ---------------------------------------------------------------- deploy and invoke


def test_model_and_endpoint_requests_match_the_api() -> None:
    model = sm.model_request(
        name="m",
        image=IMAGE_URI,
        model_data_url="s3://b/model.tar.gz",
        role_arn=ROLE,
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
    )
    check_shape("sagemaker", "CreateModel", model)
    config = sm.endpoint_config_request(name="c", model_name="m", instance_count=2)
    check_shape("sagemaker", "CreateEndpointConfig", config)
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    endpoint = sm.endpoint_request(name="e", config_name="c")
    check_shape("sagemaker", "CreateEndpoint", endpoint)
    check_shape("sagemaker", "UpdateEndpoint", endpoint)
    invoke = sm.invoke_request(endpoint="e", body=b"1,2", accept="application/json")
    check_shape("sagemaker-runtime", "InvokeEndpoint", invoke)


def test_deploy_serves_a_training_jobs_model(
    aws: None,
    docker_calls: list[tuple[list[str], str | None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sm.main(["push"]) == 0
    assert sm.main(train_args()) == 0
    job_name = capsys.readouterr().out.split()[-1]
    argv = ["deploy", "--role-arn", ROLE, "--training-job", job_name, "--instance-count", "2"]
    assert sm.main([*argv, "--env", "SAGEMAKER_MODEL_SERVER_WORKERS=2", "--wait"]) == 0
    assert capsys.readouterr().out.strip() == sm.PROJECT

    client = boto3.client("sagemaker", region_name=REGION)
    endpoint = client.describe_endpoint(EndpointName=sm.PROJECT)
    assert endpoint["EndpointStatus"] == "InService"
    config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["InstanceType"] == "ml.m5.large"
    assert variant["InitialInstanceCount"] == 2
    container = client.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
    assert container["Image"] == IMAGE_URI
    assert container["ModelDataUrl"] == f"s3://bucket/jobs/{job_name}/output/model.tar.gz"
    assert container["Environment"] == {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}


def test_deploy_refuses_a_model_that_is_not_on_s3(
    no_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["deploy", "--role-arn", ROLE, "--model-data", "model.tar.gz"]
    assert sm.main(argv) == 2
    assert "--model-data" in capsys.readouterr().err


def endpoint(status: str, config: str, **fields: Any) -> dict[str, Any]:
    return {
        "EndpointName": sm.PROJECT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{sm.PROJECT}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": 0,
        "LastModifiedTime": 0,
        **fields,
    }


def stub_update(stubber: Stubber, config: str, final: dict[str, Any]) -> None:
    """CreateModel, CreateEndpointConfig, the endpoint found, UpdateEndpoint, then polling."""
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    model = sm.model_request(
        name="model", image=IMAGE_URI, model_data_url="s3://b/model.tar.gz", role_arn=ROLE
    )
    stubber.add_response("create_model", {"ModelArn": f"{arn}:model/model"}, model)
    config_request = sm.endpoint_config_request(name=config, model_name="model")
    stubber.add_response(
        "create_endpoint_config", {"EndpointConfigArn": f"{arn}:ec/{config}"}, config_request
    )
    found = {"EndpointName": sm.PROJECT}
    stubber.add_response("describe_endpoint", endpoint("InService", "old"), found)
    update = sm.endpoint_request(name=sm.PROJECT, config_name=config)
    stubber.add_response("update_endpoint", {"EndpointArn": f"{arn}:endpoint/x"}, update)
    stubber.add_response("describe_endpoint", endpoint("Updating", "old"), found)
    stubber.add_response("describe_endpoint", final, found)


def deploy_args() -> list[str]:
    argv = ["deploy", "--role-arn", ROLE, "--image", IMAGE_URI, "--model-name", "model"]
    return [*argv, "--model-data", "s3://b/model.tar.gz", "--wait", "--poll", "0"]


def test_deploy_updates_an_existing_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # moto has no UpdateEndpoint: botocore's Stubber checks the calls instead.
    monkeypatch.setattr(sm, "unique_name", lambda base: f"{base}-new")
    config = f"{sm.PROJECT}-new"
    stubber = stubbed_session(monkeypatch, "sagemaker")
    stub_update(stubber, config, endpoint("InService", config))
    assert sm.main(deploy_args()) == 0
    stubber.assert_no_pending_responses()
    assert "updating" in capsys.readouterr().err


def test_a_rolled_back_update_prints_the_reason_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sm, "unique_name", lambda base: f"{base}-new")
    stubber = stubbed_session(monkeypatch, "sagemaker")
    reason = "The primary container for production variant AllTraffic did not pass the ping"
    stub_update(stubber, f"{sm.PROJECT}-new", endpoint("InService", "old", FailureReason=reason))
    assert sm.main(deploy_args()) == 1
    assert reason in capsys.readouterr().err


def test_invoke_sends_the_sample_request(
    aws: None, sent: list[tuple[str, dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert sm.main(["invoke"]) == 0
    assert capsys.readouterr().out  # moto answers with canned data
    (params,) = [params for operation, params in sent if operation == "InvokeEndpoint"]
    assert params["EndpointName"] == sm.PROJECT
    assert params["ContentType"] == "text/csv"
    assert params["Body"] == (SCRIPT.parents[1] / "data" / "sample-request.csv").read_bytes()
