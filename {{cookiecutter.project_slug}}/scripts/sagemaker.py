#!/usr/bin/env python3
"""Push the image to ECR, train on SageMaker, deploy an endpoint, invoke it.

Run from the project root, with the project installed with its ``aws`` extra
(``pip install -e '.[aws]'``) and AWS credentials in the environment::

    scripts/sagemaker.py push                      # after `make build`; prints the image URI
    scripts/sagemaker.py train --role-arn ARN --channel training=s3://bucket/iris/ \\
        --content-type training=text/csv --output s3://bucket/jobs/ --wait
    scripts/sagemaker.py deploy --role-arn ARN --training-job JOB_NAME --wait
    scripts/sagemaker.py invoke                    # POSTs data/sample-request.csv

The region is ``--region``, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else the one the
project was made with. Every command checks its options first (present, not empty, and
shaped as AWS expects: S3 URIs, the role ARN, names), so a missing one is named before
anything looks for AWS credentials. ``train`` also checks the hyperparameters
(``hyperparameters.json`` and ``--set name=value``) against ``model.Hyperparameters``, and
registers the ``MetricDefinitions`` that match what training prints. ``train --dry-run``
prints the CreateTrainingJob request and calls nothing.

The functions named ``*_request`` build the request of one API call and call nothing; the
others call AWS (boto3) or Docker.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

try:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("scripts/sagemaker.py needs boto3: pip install -e '.[aws]'")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "{{ cookiecutter.project_slug }}"  # image, ECR repository, job and endpoint names
DEFAULT_REGION = "{{ cookiecutter.aws_region }}"
HYPERPARAMETERS = ROOT / "hyperparameters.json"
SAMPLE_REQUEST = ROOT / "data" / "sample-request.csv"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
INPUT_MODES = ("File", "Pipe", "FastFile")
DISTRIBUTIONS = ("FullyReplicated", "ShardedByS3Key")
TRAINING_DONE = ("Completed", "Failed", "Stopped")
ENDPOINT_BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack")
# Stands for the AWS account in a dry run's image URI (a dry run asks AWS nothing).
ACCOUNT_PLACEHOLDER = "ACCOUNT_ID"
# The shapes AWS accepts, checked before anything looks for credentials: a missing or empty
# option then gets a message naming it, not "Unable to locate credentials".
S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9._-]{0,62}(/.*)?")
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]")
RESOURCE_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # jobs, models, endpoints
INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9-]+\.[a-z0-9]+")
REPOSITORY = re.compile(r"([a-z0-9]+([._-][a-z0-9]+)*/)*[a-z0-9]+([._-][a-z0-9]+)*")
TAG = re.compile(r"\w[\w.-]{0,127}")


class UsageError(Exception):
    """A wrong option or value, found before anything is sent to AWS."""


# ---------------------------------------------------------------- pure helpers and requests


def resolve_region(option: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """``--region``, else AWS_REGION, else AWS_DEFAULT_REGION, else the project's region."""
    return (
        option or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    )


def checked(value: str | None, option: str, pattern: re.Pattern[str], shape: str) -> str:
    """``value`` when it has the shape AWS accepts, else a usage error naming ``option``."""
    if not value:
        raise UsageError(f"{option} is missing or empty: expected {shape}")
    if not pattern.fullmatch(value):
        raise UsageError(f"{option} {value!r} is not {shape}")
    return value


def s3_uri(value: str | None, option: str) -> str:
    return checked(value, option, S3_URI, "an s3:// URI (s3://bucket/prefix)")


def resource_name(value: str | None, option: str) -> str:
    shape = "a SageMaker name (letters, digits and hyphens, at most 63)"
    return checked(value, option, RESOURCE_NAME, shape)


def parse_pairs(items: Iterable[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a missing ``=`` is a usage error."""
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{option} {item!r}: expected NAME=VALUE")
        pairs[name.strip()] = value
    return pairs


def unique_name(base: str, now: float | None = None) -> str:
    """``base-2024-05-01-12-30-59-123`` (UTC): a job, model or endpoint config name.

    The project name leaves room for the 24 characters within SageMaker's 63.
    """
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now))
    return f"{base}-{stamp}-{int(now * 1000) % 1000:03d}"


def ecr_image_uri(registry: str, repository: str, tag: str) -> str:
    return f"{registry}/{repository}:{tag}"


def ecr_registry(account: str, region: str) -> str:
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def hyperparameter_string(value: Any) -> str:
    """SageMaker takes strings only: a string as is, anything else as JSON (``[32, 32]``)."""
    return value if isinstance(value, str) else json.dumps(value)


def job_hyperparameters(
    path: Path = HYPERPARAMETERS, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``hyperparameters.json`` with ``--set`` overrides, checked against the model.

    Raises ``UsageError`` naming the hyperparameter when ``model.Hyperparameters`` would
    refuse a value, so a bad value fails here and not minutes into a paid job.
    """
    from {{ cookiecutter.package_name }} import hyperparameters, model

    raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path} must hold a JSON object")
    values = {name: hyperparameter_string(value) for name, value in raw.items()}
    values.update(overrides or {})
    try:
        hyperparameters.load(model.Hyperparameters, values)
    except hyperparameters.HyperparameterError as exc:
        raise UsageError(str(exc)) from exc
    return values


def project_metric_definitions() -> list[dict[str, str]]:
    """The regexes that match the ``name=value`` lines training prints."""
    from {{ cookiecutter.package_name }}.job import metric_definitions
    from {{ cookiecutter.package_name }}.training import all_metrics

    return metric_definitions(all_metrics())


def channel_request(
    name: str,
    s3_uri: str,
    content_type: str | None = None,
    distribution: str = "FullyReplicated",
) -> dict[str, Any]:
    """One entry of CreateTrainingJob's ``InputDataConfig``."""
    checked(s3_uri, f"--channel {name}", S3_URI, "an s3:// URI (s3://bucket/prefix)")
    channel: dict[str, Any] = {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": s3_uri,
                "S3DataDistributionType": distribution,
            }
        },
    }
    if content_type:
        channel["ContentType"] = content_type
    return channel


def training_job_request(
    *,
    name: str,
    image: str,
    role_arn: str,
    channels: Mapping[str, str],
    output_s3: str,
    hyperparameters: Mapping[str, str],
    metric_definitions: list[dict[str, str]],
    content_types: Mapping[str, str] | None = None,
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    volume_size_gb: int = 30,
    input_mode: str = "File",
    distribution: str = "FullyReplicated",
    max_run_seconds: int = 86_400,
    spot: bool = False,
    max_wait_seconds: int | None = None,
    checkpoint_s3: str | None = None,
    checkpoint_local_path: str = CHECKPOINT_LOCAL_PATH,
) -> dict[str, Any]:
    """The CreateTrainingJob request (keyword arguments of boto3's ``create_training_job``)."""
    content_types = dict(content_types or {})
    if "training" not in channels:
        raise UsageError("a 'training' channel is required: --channel training=s3://...")
    unknown = sorted(set(content_types) - set(channels))
    if unknown:
        raise UsageError(f"--content-type for a channel the job does not have: {unknown}")
    input_data_config = [
        channel_request(channel, uri, content_types.get(channel), distribution)
        for channel, uri in channels.items()
    ]
    s3_uri(output_s3, "--output")
    checked(role_arn, "--role-arn", ROLE_ARN, "an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    resource_name(name, "--job-name")
    checked(instance_type, "--instance-type", INSTANCE_TYPE, "an instance type (ml.m5.large)")
    if input_mode not in INPUT_MODES:
        raise UsageError(f"--input-mode {input_mode!r} is not one of {', '.join(INPUT_MODES)}")
    if instance_count < 1:
        raise UsageError("--instance-count must be >= 1")
    if volume_size_gb < 1:
        raise UsageError("--volume-size must be >= 1")
    if max_run_seconds < 1:
        raise UsageError("--max-run must be >= 1")
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": max_run_seconds}
    if spot:
        max_wait = max_run_seconds if max_wait_seconds is None else max_wait_seconds
        if max_wait < max_run_seconds:
            raise UsageError(
                f"--max-wait ({max_wait} s) must be >= --max-run ({max_run_seconds} s)"
            )
        stopping["MaxWaitTimeInSeconds"] = max_wait
    elif max_wait_seconds is not None:
        raise UsageError("--max-wait applies to managed spot training only (add --spot)")
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": input_mode,
            "MetricDefinitions": metric_definitions,
        },
        "RoleArn": role_arn,
        "InputDataConfig": input_data_config,
        "OutputDataConfig": {"S3OutputPath": output_s3},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            "VolumeSizeInGB": volume_size_gb,
        },
        "StoppingCondition": stopping,
        "HyperParameters": {name: str(value) for name, value in hyperparameters.items()},
        "EnableManagedSpotTraining": spot,
    }
    if checkpoint_s3 is not None:
        s3_uri(checkpoint_s3, "--checkpoint-s3")
        request["CheckpointConfig"] = {"S3Uri": checkpoint_s3, "LocalPath": checkpoint_local_path}
    return request


def model_request(
    *,
    name: str,
    image: str,
    model_data_url: str,
    role_arn: str,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The CreateModel request: the image and the ``model.tar.gz`` it serves."""
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": model_data_url}
    if environment:
        container["Environment"] = dict(environment)
    return {"ModelName": name, "PrimaryContainer": container, "ExecutionRoleArn": role_arn}


def endpoint_config_request(
    *, name: str, model_name: str, instance_type: str = "ml.m5.large", instance_count: int = 1
) -> dict[str, Any]:
    """The CreateEndpointConfig request: one variant taking all the traffic."""
    return {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "InitialInstanceCount": instance_count,
                "InstanceType": instance_type,
                "InitialVariantWeight": 1.0,
            }
        ],
    }


def endpoint_request(*, name: str, config_name: str) -> dict[str, Any]:
    """The CreateEndpoint request, which is also UpdateEndpoint's."""
    return {"EndpointName": name, "EndpointConfigName": config_name}


def invoke_request(
    *, endpoint: str, body: bytes, content_type: str = "text/csv", accept: str | None = None
) -> dict[str, Any]:
    """The InvokeEndpoint request."""
    request: dict[str, Any] = {
        "EndpointName": endpoint,
        "Body": body,
        "ContentType": content_type,
    }
    if accept:
        request["Accept"] = accept
    return request


def decode_authorization(data: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(user, password, registry)`` from one ``authorizationData`` entry of ECR."""
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    registry = data["proxyEndpoint"].removeprefix("https://").removeprefix("http://")
    return user, password, registry


def docker_commands(local_image: str, remote_image: str, registry: str) -> list[list[str]]:
    """``docker login`` (password on stdin), ``tag`` and ``push``, in that order."""
    return [
        ["docker", "login", "--username", "AWS", "--password-stdin", registry],
        ["docker", "tag", local_image, remote_image],
        ["docker", "push", remote_image],
    ]


# ---------------------------------------------------------------- calls to Docker and AWS


def docker(command: list[str], stdin: str | None = None) -> None:
    subprocess.run(command, input=stdin, text=True, check=True)


def ensure_repository(ecr: Any, name: str) -> str:
    """The repository's URI; the repository is created when it does not exist."""
    try:
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"]
        return found[0]["repositoryUri"]
    except ecr.exceptions.RepositoryNotFoundException:
        created = ecr.create_repository(
            repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
        )
        log(f"created ECR repository {name}")
        return created["repository"]["repositoryUri"]


def repository_image(ecr: Any, repository: str, tag: str) -> str:
    """The image URI of ``repository:tag`` in this account's ECR (pushed by ``push``)."""
    try:
        found = ecr.describe_repositories(repositoryNames=[repository])["repositories"]
    except ecr.exceptions.RepositoryNotFoundException:
        raise UsageError(
            f"no ECR repository {repository!r} in this account and region: run `make push`"
        ) from None
    return f"{found[0]['repositoryUri']}:{tag}"


def push(ecr: Any, local_image: str, repository: str, tag: str) -> str:
    """Tag ``local_image:tag`` for ECR and push it; returns the image URI."""
    uri = f"{ensure_repository(ecr, repository)}:{tag}"
    token = ecr.get_authorization_token()["authorizationData"][0]
    _, password, registry = decode_authorization(token)
    login, *rest = docker_commands(f"{local_image}:{tag}", uri, registry)
    docker(login, stdin=password)
    for command in rest:
        docker(command)
    return uri


def wait_for_training(
    sagemaker: Any, name: str, poll_seconds: float, out: TextIO | None = None
) -> dict[str, Any]:
    """DescribeTrainingJob until Completed, Failed or Stopped; prints status changes."""
    out = out or sys.stderr
    seen = None
    while True:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        status = (job["TrainingJobStatus"], job.get("SecondaryStatus"))
        if status != seen:
            print(f"{name}: {' / '.join(filter(None, status))}", file=out, flush=True)
            seen = status
        if job["TrainingJobStatus"] in TRAINING_DONE:
            return job
        time.sleep(poll_seconds)


def model_data_of_job(sagemaker: Any, name: str) -> str:
    """``model.tar.gz`` of a completed training job."""
    job = sagemaker.describe_training_job(TrainingJobName=name)
    if job["TrainingJobStatus"] != "Completed":
        raise UsageError(f"training job {name} is {job['TrainingJobStatus']}, not Completed")
    return job["ModelArtifacts"]["S3ModelArtifacts"]


def endpoint_exists(sagemaker: Any, name: str) -> bool:
    try:
        sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationException":
            return False  # "Could not find endpoint ..."
        raise
    return True


def deploy(
    sagemaker: Any,
    model: Mapping[str, Any],
    config: Mapping[str, Any],
    endpoint: Mapping[str, Any],
) -> str:
    """CreateModel, CreateEndpointConfig, then CreateEndpoint or UpdateEndpoint."""
    sagemaker.create_model(**model)
    sagemaker.create_endpoint_config(**config)
    if endpoint_exists(sagemaker, endpoint["EndpointName"]):
        sagemaker.update_endpoint(**endpoint)
        return "updating"
    sagemaker.create_endpoint(**endpoint)
    return "creating"


def wait_for_endpoint(
    sagemaker: Any, name: str, poll_seconds: float, out: TextIO | None = None
) -> dict[str, Any]:
    """DescribeEndpoint until it is no longer busy; prints status changes."""
    out = out or sys.stderr
    seen = None
    while True:
        endpoint = sagemaker.describe_endpoint(EndpointName=name)
        status = endpoint["EndpointStatus"]
        if status != seen:
            print(f"{name}: {status}", file=out, flush=True)
            seen = status
        if status not in ENDPOINT_BUSY:
            return endpoint
        time.sleep(poll_seconds)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- subcommands


def session(args: argparse.Namespace) -> Any:
    return boto3.session.Session(region_name=resolve_region(args.region))


def check_region(args: argparse.Namespace) -> None:
    region = resolve_region(args.region)
    if not REGION.fullmatch(region):
        raise UsageError(f"region {region!r} (--region, or AWS_REGION) is not an AWS region")


def check_image_options(args: argparse.Namespace) -> None:
    """``--repository`` and ``--tag``, which name the image unless ``--image`` is given."""
    if getattr(args, "image_uri", None):
        return
    checked(args.repository, "--repository", REPOSITORY, "an ECR repository name")
    checked(args.tag, "--tag", TAG, "an image tag")


def command_push(args: argparse.Namespace) -> int:
    if not args.image:
        raise UsageError("--image is empty: expected the local image to push")
    check_image_options(args)
    ecr = session(args).client("ecr")
    print(push(ecr, args.image, args.repository, args.tag))
    return 0


def image_for(args: argparse.Namespace, aws: Any | None) -> str:
    """``--image``, else ``repository:tag`` in this account's ECR."""
    if args.image_uri:
        return args.image_uri
    if aws is None:  # dry run: ask AWS nothing
        registry = ecr_registry(ACCOUNT_PLACEHOLDER, resolve_region(args.region))
        return ecr_image_uri(registry, args.repository, args.tag)
    return repository_image(aws.client("ecr"), args.repository, args.tag)


def required_role(args: argparse.Namespace) -> str:
    shape = "an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
    return checked(args.role_arn, "--role-arn (or SAGEMAKER_ROLE_ARN)", ROLE_ARN, shape)


def command_train(args: argparse.Namespace) -> int:
    # Everything that can be checked is checked before the first call to AWS: the request
    # is made whole first, with a stand-in for the image URI that only ECR knows.
    role_arn = required_role(args)
    check_image_options(args)
    overrides = parse_pairs(args.set, "--set")
    channels = parse_pairs(args.channel, "--channel")
    content_types = parse_pairs(args.content_type, "--content-type")
    hyperparameters = job_hyperparameters(Path(args.hyperparameters), overrides)
    name = unique_name(PROJECT) if args.job_name is None else args.job_name
    checkpoint_s3 = args.checkpoint_s3
    if args.spot and checkpoint_s3 is None:
        # A spot job interrupted without checkpoints starts over: keep them next to its output.
        checkpoint_s3 = f"{args.output.rstrip('/')}/{name}/checkpoints"
    request = training_job_request(
        name=name,
        image=image_for(args, None),
        role_arn=role_arn,
        channels=channels,
        content_types=content_types,
        output_s3=args.output,
        hyperparameters=hyperparameters,
        metric_definitions=project_metric_definitions(),
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        volume_size_gb=args.volume_size,
        input_mode=args.input_mode,
        distribution=args.distribution,
        max_run_seconds=args.max_run,
        spot=args.spot,
        max_wait_seconds=args.max_wait,
        checkpoint_s3=checkpoint_s3,
        checkpoint_local_path=args.checkpoint_local_path,
    )
    if args.dry_run:
        print(json.dumps(request, indent=2))
        return 0
    aws = session(args)
    request["AlgorithmSpecification"]["TrainingImage"] = image_for(args, aws)
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**request)
    print(name, flush=True)
    if not args.wait:
        return 0
    job = wait_for_training(sagemaker, name, args.poll)
    if job["TrainingJobStatus"] != "Completed":
        log(f"training job {name} {job['TrainingJobStatus']}: {job.get('FailureReason', '')}")
        return 1
    print(job["ModelArtifacts"]["S3ModelArtifacts"])
    return 0


def command_deploy(args: argparse.Namespace) -> int:
    role_arn = required_role(args)
    check_image_options(args)
    environment = parse_pairs(args.env, "--env")
    if not (args.model_data or args.training_job):
        raise UsageError("--training-job or --model-data is missing or empty: expected one")
    if args.model_data:
        s3_uri(args.model_data, "--model-data")
    else:
        resource_name(args.training_job, "--training-job")
    resource_name(args.endpoint_name, "--endpoint-name")
    model_name = unique_name(PROJECT) if args.model_name is None else args.model_name
    resource_name(model_name, "--model-name")
    checked(args.instance_type, "--instance-type", INSTANCE_TYPE, "an instance type (ml.m5.large)")
    if args.instance_count < 1:
        raise UsageError("--instance-count must be >= 1")
    aws = session(args)
    sagemaker = aws.client("sagemaker")
    model_data = args.model_data or model_data_of_job(sagemaker, args.training_job)
    config_name = unique_name(args.endpoint_name)
    action = deploy(
        sagemaker,
        model_request(
            name=model_name,
            image=image_for(args, aws),
            model_data_url=model_data,
            role_arn=role_arn,
            environment=environment,
        ),
        endpoint_config_request(
            name=config_name,
            model_name=model_name,
            instance_type=args.instance_type,
            instance_count=args.instance_count,
        ),
        endpoint_request(name=args.endpoint_name, config_name=config_name),
    )
    log(f"endpoint {args.endpoint_name}: {action} with model {model_name} ({model_data})")
    print(args.endpoint_name, flush=True)
    if not args.wait:
        return 0
    endpoint = wait_for_endpoint(sagemaker, args.endpoint_name, args.poll)
    if endpoint["EndpointStatus"] != "InService" or endpoint["EndpointConfigName"] != config_name:
        reason = endpoint.get("FailureReason") or "the update did not take effect"
        log(f"endpoint {args.endpoint_name} {endpoint['EndpointStatus']}: {reason}")
        return 1
    return 0


def command_invoke(args: argparse.Namespace) -> int:
    resource_name(args.endpoint_name, "--endpoint-name")
    if not args.content_type:
        raise UsageError("--content-type is empty: expected a MIME type (text/csv)")
    try:
        body = Path(args.body).read_bytes()
    except OSError as exc:
        raise UsageError(f"--body {args.body!r}: {exc.strerror}") from None
    request = invoke_request(
        endpoint=args.endpoint_name, body=body, content_type=args.content_type, accept=args.accept
    )
    runtime = session(args).client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(**request)
    sys.stdout.write(answer["Body"].read().decode("utf-8"))
    sys.stdout.flush()
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="scripts/sagemaker.py", description=__doc__.split("\n\n")[0]
    )
    top.add_argument("--region", help=f"AWS region (default: environment, else {DEFAULT_REGION})")
    commands = top.add_subparsers(dest="command", required=True)

    def image_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--repository", default=PROJECT, help="ECR repository (%(default)s)")
        sub.add_argument("--tag", default="latest", help="image tag (%(default)s)")

    def aws_image_options(sub: argparse.ArgumentParser) -> None:
        image_options(sub)
        sub.add_argument(
            "--image", dest="image_uri", help="full image URI (default: REPOSITORY:TAG in ECR)"
        )
        sub.add_argument(
            "--role-arn",
            default=os.environ.get("SAGEMAKER_ROLE_ARN"),
            help="the IAM role SageMaker assumes (default: $SAGEMAKER_ROLE_ARN)",
        )
        sub.add_argument("--instance-type", default="ml.m5.large", help="(%(default)s)")
        sub.add_argument("--instance-count", type=int, default=1, help="(%(default)s)")
        sub.add_argument("--wait", action="store_true", help="wait until it is done")
        sub.add_argument("--poll", type=float, default=30, help="seconds between checks")

    push_cmd = commands.add_parser("push", help="push the image built by `make build` to ECR")
    image_options(push_cmd)
    push_cmd.add_argument("--image", default=PROJECT, help="local image name (%(default)s)")
    push_cmd.set_defaults(run=command_push)

    train = commands.add_parser("train", help="start a SageMaker training job")
    aws_image_options(train)
    train.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="NAME=S3URI",
        help="an input channel (repeatable); 'training' is required",
    )
    train.add_argument(
        "--content-type",
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="a channel's ContentType, e.g. training=text/csv (repeatable)",
    )
    train.add_argument("--output", required=True, help="S3 path for model.tar.gz and outputs")
    train.add_argument(
        "--hyperparameters", default=str(HYPERPARAMETERS), help="JSON file (%(default)s)"
    )
    train.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="override one"
    )
    train.add_argument("--job-name", help="default: the project name and a timestamp")
    train.add_argument("--volume-size", type=int, default=30, help="GB (%(default)s)")
    train.add_argument("--input-mode", default="File", choices=INPUT_MODES)
    train.add_argument("--distribution", default="FullyReplicated", choices=DISTRIBUTIONS)
    train.add_argument("--max-run", type=int, default=86_400, help="seconds (%(default)s)")
    train.add_argument("--spot", action="store_true", help="managed spot training")
    train.add_argument("--max-wait", type=int, help="spot: seconds (default: --max-run)")
    train.add_argument(
        "--checkpoint-s3", help="checkpoint S3 URI (spot default: OUTPUT/JOB/checkpoints)"
    )
    train.add_argument("--checkpoint-local-path", default=CHECKPOINT_LOCAL_PATH)
    train.add_argument("--dry-run", action="store_true", help="print the request, call nothing")
    train.set_defaults(run=command_train)

    deploy_cmd = commands.add_parser("deploy", help="create or update an endpoint")
    aws_image_options(deploy_cmd)
    source = deploy_cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--training-job", help="serve the model of this training job")
    source.add_argument("--model-data", help="serve this model.tar.gz (s3://...)")
    deploy_cmd.add_argument("--endpoint-name", default=PROJECT, help="(%(default)s)")
    deploy_cmd.add_argument("--model-name", help="default: the project name and a timestamp")
    deploy_cmd.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="container variable"
    )
    deploy_cmd.set_defaults(run=command_deploy)

    invoke = commands.add_parser("invoke", help="send a request to the endpoint")
    invoke.add_argument("--endpoint-name", default=PROJECT, help="(%(default)s)")
    invoke.add_argument("--body", default=str(SAMPLE_REQUEST), help="file (%(default)s)")
    invoke.add_argument("--content-type", default="text/csv", help="(%(default)s)")
    invoke.add_argument("--accept", help="answer type (default: the server's choice)")
    invoke.set_defaults(run=command_invoke)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        check_region(args)
        return args.run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
