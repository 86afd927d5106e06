"""infra/: the CloudFormation template lints, deploys to moto, and AwsEc2Provider runs against it."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from autoscaler.aws_ec2 import AwsEc2Provider
from core.settings import AwsSettings
from tests.aws.conftest import REGION, Clock, Sleeps

INFRA = Path(__file__).resolve().parents[2] / "infra"
TEMPLATE = INFRA / "tidal.yaml"
WRAPPER = INFRA / "bin" / "tidal-with-redis-url"
INSTANCE_TYPES = ["t3.micro", "t3.small"]


def test_cfn_lint_passes() -> None:
    beside_python = Path(sys.executable).parent / "cfn-lint"
    cfn_lint = str(beside_python) if beside_python.exists() else shutil.which("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed")
    result = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _load_template() -> dict[str, Any]:
    cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")
    template: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return template


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in st:
                st = st["Fn::If"][1]  # the statement a true condition adds
            out.append(st)
    return out


def _allowing(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    def actions(st: dict[str, Any]) -> list[str]:
        a = st["Action"]
        return [a] if isinstance(a, str) else list(a)

    return [st for st in statements if action in actions(st)]


def test_autoscaler_policy_is_scoped_by_tags_and_template() -> None:
    statements = _statements(_load_template(), "AutoscalerRole")

    for st in statements:
        assert "*" not in str(st["Action"]), st
    for st in _allowing(statements, "ec2:TerminateInstances"):
        assert st["Condition"]["StringEquals"]["ec2:ResourceTag/tidal:managed"] == "true"
    run = _allowing(statements, "ec2:RunInstances")
    assert run
    for st in run:
        # The template itself, and spot requests (which the instance statement must allow too).
        if any(kind in str(st["Resource"]) for kind in (":launch-template/", ":spot-instances-request/")):
            assert "instance/" not in str(st["Resource"])
            continue
        assert "ec2:LaunchTemplate" in st["Condition"]["ArnLike"]
    (instances,) = [st for st in run if "instance/*" in str(st["Resource"])]
    assert instances["Condition"]["StringEquals"]["aws:RequestTag/tidal:managed"] == "true"
    for st in _allowing(statements, "ec2:CreateTags"):
        assert st["Condition"]["StringEquals"]["ec2:CreateAction"] == "RunInstances"
    (pass_role,) = _allowing(statements, "iam:PassRole")
    assert pass_role["Resource"] == {"Fn::GetAtt": ["WorkerRole", "Arn"]}


def test_worker_role_may_only_read_the_redis_url() -> None:
    statements = _statements(_load_template(), "WorkerRole")
    assert {str(st["Action"]) for st in statements} == {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject"}
    (s3,) = _allowing(statements, "s3:GetObject")  # only with ModelPackageBucket, only that bucket
    assert s3["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelPackageBucket}/*"}


@pytest.fixture
def stack(aws: str) -> dict[str, Any]:
    return deploy_stack()


def deploy_stack(**overrides: str) -> dict[str, Any]:
    """The template deployed to moto into a fresh VPC; returns the outputs and the inputs used."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24")["Subnet"]["SubnetId"] for i in range(2)
    ]
    ami = ec2.register_image(Name="tidal-worker-test", RootDeviceName="/dev/xvda")["ImageId"]
    cf = boto3.client("cloudformation", region_name=REGION)
    params = {
        "VpcId": vpc,
        "SubnetIds": ",".join(subnets),
        "WorkerAmiId": ami,
        # Passed explicitly: moto splits a CommaDelimitedList only when given, not its default.
        "WorkerInstanceTypes": ",".join(INSTANCE_TYPES),
        "TidalPackageSource": "tidal==0.1.0",
        **overrides,
    }
    cf.create_stack(
        StackName="tidal",
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    cf.get_waiter("stack_create_complete").wait(
        StackName="tidal", WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    (described,) = cf.describe_stacks(StackName="tidal")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    return {"outputs": outputs, "subnets": subnets, "vpc": vpc, "ami": ami}


def test_provider_launches_and_terminates_from_the_stacks_launch_template(
    stack: dict[str, Any], clock: Clock, sleeps: Sleeps
) -> None:
    out = stack["outputs"]
    ec2 = boto3.client("ec2", region_name=REGION)
    aws = AwsSettings(
        region=REGION,
        launch_template_name=out["WorkerLaunchTemplateName"],
        instance_types=out["WorkerInstanceTypes"].split(","),
        subnet_ids=out["WorkerSubnetIds"].split(","),
    )
    provider = AwsEc2Provider(ec2, aws, now=clock, sleep=sleeps)

    launched = provider.launch("echo", 2, token="cfn-1")

    assert [(i.instance_type, i.subnet) for i in launched] == [("t3.micro", stack["subnets"][0])] * 2
    ids = [i.id for i in launched]
    described = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
    for d in described:
        tags = {t["Key"]: t["Value"] for t in d["Tags"]}
        assert tags["tidal:managed"] == "true"
        assert tags["tidal:pool"] == "echo"
        assert tags["aws:ec2launchtemplate:id"] == out["WorkerLaunchTemplateId"]
        assert d["ImageId"] == stack["ami"]
        assert [g["GroupId"] for g in d["SecurityGroups"]] == [out["WorkerSecurityGroupId"]]
    assert {i.id for i in provider.list_instances("echo")} == set(ids)

    provider.terminate(ids)
    assert provider.list_instances() == []


def _template_data(out: dict[str, str]) -> dict[str, Any]:
    ec2 = boto3.client("ec2", region_name=REGION)
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=out["WorkerLaunchTemplateId"])
    data: dict[str, Any] = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    return data


def test_launch_template_requires_imdsv2_and_runs_the_tagged_pool(stack: dict[str, Any]) -> None:
    data = _template_data(stack["outputs"])
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
    assert data["InstanceType"] == INSTANCE_TYPES[0]
    assert data["IamInstanceProfile"]["Arn"].split("/")[-1].startswith("tidal-WorkerInstanceProfile")

    script = base64.b64decode(data["UserData"]).decode()
    assert "meta-data/tags/instance/tidal:pool" in script
    assert "pip install 'tidal==0.1.0'" in script
    assert "TIDAL_REDIS_URL_PARAMETER=/tidal/redis-url" in script
    assert "tidal worker --model $TIDAL_POOL --gpus auto" in script
    assert "tidal models install \"$POOL\" --instance-id auto" in script
    # Every Fn::Sub variable was filled in; these two are the script's own.
    assert "${" not in script.replace("${TIDAL_PYTHON:-", "").replace("${AWS_EC2_METADATA_SERVICE_ENDPOINT:-", "")
    if shutil.which("bash"):
        syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=30)
        assert syntax.returncode == 0, syntax.stderr


def test_user_data_installs_the_same_wrapper_as_infra_bin(stack: dict[str, Any]) -> None:
    script = base64.b64decode(_template_data(stack["outputs"])["UserData"]).decode()
    start = script.index("cat > /usr/local/bin/tidal-with-redis-url <<'EOF'\n")
    body = script[script.index("\n", start) + 1 :]
    assert body[: body.index("\nEOF\n") + 1] == WRAPPER.read_text()


def test_user_data_installs_the_same_worker_unit_as_infra_systemd(stack: dict[str, Any]) -> None:
    script = base64.b64decode(_template_data(stack["outputs"])["UserData"]).decode()
    start = script.index("cat > /etc/systemd/system/tidal-worker.service <<'EOF'\n")
    body = script[script.index("\n", start) + 1 :]
    unit = body[: body.index("\nEOF\n") + 1]
    assert unit == (INFRA / "systemd" / "tidal-worker.service").read_text()
    assert "RestartPreventExitStatus=78" in unit


def test_wrapper_reads_redis_url_from_an_ssm_secure_string(aws: str) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(
        Name="/tidal/redis-url", Value="rediss://:s3cret@redis.internal:6379/0", Type="SecureString"
    )
    env = {**os.environ, "TIDAL_PYTHON": sys.executable, "TIDAL_REDIS_URL_PARAMETER": "/tidal/redis-url"}
    result = subprocess.run(
        ["sh", str(WRAPPER), "sh", "-c", 'printf %s "$REDIS_URL"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "rediss://:s3cret@redis.internal:6379/0"


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for name in ("tidal-autoscale.service", "tidal-autoscale.timer", "tidal-worker.service"):
        text = (INFRA / "systemd" / name).read_text()
        # verify insists the executable exists on this machine; the wrapper is installed on the host.
        (tmp_path / name).write_text(text.replace("/usr/local/bin/tidal-with-redis-url", "/bin/true"))
    result = subprocess.run(
        [
            analyze,
            "verify",
            str(tmp_path / "tidal-autoscale.timer"),
            str(tmp_path / "tidal-autoscale.service"),
            str(tmp_path / "tidal-worker.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    service = (INFRA / "systemd" / "tidal-autoscale.service").read_text()
    assert "ExecStart=/usr/local/bin/tidal-with-redis-url /opt/tidal/bin/tidal autoscale --once" in service
    assert "OnCalendar=*-*-* *:*:00" in (INFRA / "systemd" / "tidal-autoscale.timer").read_text()
