"""Guards against infra/resources.yaml drifting from the models, queues without DLQs, and undeployable templates."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
from cfnlint.decode.cfn_yaml import load as load_cfn_yaml
from moto import mock_aws

from chalicelib.config import get_settings
from chalicelib.models.registry import MODELS
from infra import local_aws
from infra.template_wiring import TemplateError, wire_template

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "infra" / "resources.yaml"
CHALICE_CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")


def _suffix(model) -> str:
    prefix = get_settings().table_prefix
    assert model.Meta.table_name.startswith(prefix)
    return model.Meta.table_name[len(prefix):]


def _model_schema(model) -> dict:
    schema = model._get_schema()
    types = {a["AttributeName"]: a["AttributeType"] for a in schema["attribute_definitions"]}

    def keys(key_schema):
        return sorted((k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in key_schema)

    def indexes(entries):
        return {i["index_name"]: (keys(i["key_schema"]), i["projection"]["ProjectionType"],
                                  sorted(i["projection"].get("NonKeyAttributes", []))) for i in entries}

    return {"keys": keys(schema["key_schema"]), "gsi": indexes(schema["global_secondary_indexes"]),
            "lsi": indexes(schema["local_secondary_indexes"])}


def _deployed_schema(table: dict) -> dict:
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}

    def keys(key_schema):
        return sorted((k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in key_schema)

    def indexes(entries):
        return {i["IndexName"]: (keys(i["KeySchema"]), i["Projection"]["ProjectionType"],
                                 sorted(i["Projection"].get("NonKeyAttributes", []))) for i in entries or []}

    return {"keys": keys(table["KeySchema"]), "gsi": indexes(table.get("GlobalSecondaryIndexes")),
            "lsi": indexes(table.get("LocalSecondaryIndexes"))}


@pytest.fixture(scope="module")
def deployed():
    """resources.yaml deployed into moto through CloudFormation, as the local stack does."""
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        outputs = local_aws.deploy_resources(session, "local")
        yield session, outputs


@pytest.fixture(scope="module")
def template() -> dict:
    return load_cfn_yaml(str(RESOURCES))


def _lambda_timeouts(function: str) -> list[int]:
    return [int(stage.get("lambda_functions", {}).get(function, {}).get("lambda_timeout", 0))
            for stage in CHALICE_CONFIG["stages"].values()]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_model_table_deploys_with_its_key_schema_and_indexes(deployed, model):
    session, _ = deployed
    table = session.client("dynamodb").describe_table(TableName=f"mailbridge-local-{_suffix(model)}")["Table"]
    assert _deployed_schema(table) == _model_schema(model)
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_template_defines_no_table_without_a_model(template):
    model_tables = {f"mailbridge-${{Stage}}-{_suffix(model)}" for model in MODELS}
    template_tables = {r["Properties"]["TableName"]["Fn::Sub"] for r in template["Resources"].values()
                       if r["Type"] == "AWS::DynamoDB::Table"}
    assert template_tables == model_tables


def test_every_table_is_on_demand_encrypted_and_recoverable_and_events_expire(template):
    tables = {r["Properties"]["TableName"]["Fn::Sub"]: r for r in template["Resources"].values()
              if r["Type"] == "AWS::DynamoDB::Table"}
    for name, table in tables.items():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert props["SSESpecification"]["SSEEnabled"] is True, name
        assert table["DeletionPolicy"] == "Retain", name
    assert tables["mailbridge-${Stage}-events"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at", "Enabled": True}


def _batching_window(function: str) -> int:
    """The event source's MaximumBatchingWindowInSeconds as app.py declares it (records received, i.e.
    invisible, wait up to that long before the invocation starts)."""
    import app as application
    for source in application.app.event_sources:
        if getattr(source, "name", None) == function:
            return int(getattr(source, "maximum_batching_window_in_seconds", 0) or 0)
    raise AssertionError(f"no event source for {function}")


def test_queues_redrive_to_dlqs_with_visibility_covering_six_lambda_timeouts(deployed):
    session, outputs = deployed
    sqs = session.client("sqs")
    for queue, dlq, function in (("SyncQueue", "SyncDeadLetterQueue", "worker"),
                                 ("CheckQueue", "CheckDeadLetterQueue", "checker"),
                                 ("EventsQueue", "EventsDeadLetterQueue", "notifier")):
        attributes = sqs.get_queue_attributes(QueueUrl=outputs[f"{queue}Url"], AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == outputs[f"{dlq}Arn"]
        assert int(redrive["maxReceiveCount"]) >= 5
        # AWS Lambda developer guide, "Creating and configuring an Amazon SQS event source mapping": at least six
        # times the function timeout — counted from the invocation, i.e. after the batching window.
        assert int(attributes["VisibilityTimeout"]) >= 6 * max(_lambda_timeouts(function)) + _batching_window(
            function), queue
        dlq_attributes = sqs.get_queue_attributes(QueueUrl=outputs[f"{dlq}Url"],
                                                  AttributeNames=["MessageRetentionPeriod"])["Attributes"]
        # A dead-lettered message keeps its original enqueue time, so the DLQ must retain at least as long
        # (SQS Developer Guide, "Using dead-letter queues").
        assert int(dlq_attributes["MessageRetentionPeriod"]) >= int(attributes["MessageRetentionPeriod"]), dlq
    worker_timeout = int(CHALICE_CONFIG["environment_variables"]["MAILBRIDGE_WORKER_TIMEOUT_SECONDS"])
    assert max(_lambda_timeouts("worker")) <= worker_timeout
    from chalicelib.sync.lease import lease_seconds
    assert lease_seconds() > max(_lambda_timeouts("worker"))          # a live worker's lease never lapses


def test_sqs_event_sources_never_invoke_beyond_the_functions_reserved_concurrency():
    """Event source mappings do not account for reserved concurrency: the pollers take more batches than the
    function may run, the throttled batches return after the visibility timeout and count toward
    maxReceiveCount — a burst of scheduled jobs dead-lettered by throttling alone. The event source's maximum
    concurrency must not exceed the reserved concurrency (AWS Lambda developer guide, "Configuring scaling
    behavior for SQS event source mappings")."""
    env = {"MAILBRIDGE_SIGNING_KEY": "{{resolve:secretsmanager:a:SecretString:b}}",
           "MAILBRIDGE_OPERATOR_KEY_SHA256": "{{resolve:secretsmanager:a:SecretString:c}}"}
    template = _minimal_template(env)
    template["Resources"]["Worker"]["Properties"]["ReservedConcurrentExecutions"] = 10
    source = wire_template(template, "dev")["Resources"]["Worker"]["Properties"]["Events"]["Src"]["Properties"]
    assert source["ScalingConfig"] == {"MaximumConcurrency": 10}
    template = _minimal_template(env)
    template["Resources"]["Worker"]["Properties"]["ReservedConcurrentExecutions"] = 1   # below the ESM minimum 2
    with pytest.raises(TemplateError, match="reserved concurrency"):
        wire_template(template, "dev")


def test_outputs_name_the_resources_the_app_reads(deployed):
    session, outputs = deployed
    env = local_aws.mailbridge_environment(outputs)
    assert env["MAILBRIDGE_TABLE_PREFIX"] == "mailbridge-local-"
    session.client("s3").head_bucket(Bucket=env["MAILBRIDGE_RAW_BUCKET"])
    kms = session.client("kms")
    assert kms.describe_key(KeyId=env["MAILBRIDGE_KMS_KEY_ID"])["KeyMetadata"]["Enabled"]
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases["alias/mailbridge-local-secrets"] == env["MAILBRIDGE_KMS_KEY_ID"]


def test_bucket_is_private_encrypted_and_tls_only_and_key_rotates(template):
    resources = template["Resources"]
    bucket = resources["RawMailBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "aws:kms"
    deny = resources["RawMailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert resources["SecretsKey"]["Properties"]["EnableKeyRotation"] is True


def test_alarms_watch_both_dlqs_and_every_function(template):
    alarms = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watched_queues = {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for a in alarms if a["Namespace"] == "AWS/SQS"}
    assert {"SyncDeadLetterQueue", "CheckDeadLetterQueue", "EventsDeadLetterQueue"} <= watched_queues
    watched_functions = {a["Dimensions"][0]["Value"]["Fn::Sub"] for a in alarms if a["Namespace"] == "AWS/Lambda"}
    for function in CHALICE_CONFIG["stages"]["prod"]["lambda_functions"]:
        expected = "mailbridge-${Stage}" if function == "api_handler" else f"mailbridge-${{Stage}}-{function}"
        assert expected in watched_functions, function


@pytest.mark.slow
def test_cfn_lint_passes_on_resources_template():
    result = subprocess.run([CFN_LINT, str(RESOURCES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _sam_function(handler: str, queue_name: str | None, env: dict) -> dict:
    props = {"Handler": handler, "Environment": {"Variables": dict(env)}}
    if queue_name:
        props["Events"] = {"Src": {"Type": "SQS", "Properties": {"Queue": {
            "Fn::Sub": f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{queue_name}"}}}}
    return {"Type": "AWS::Serverless::Function", "Properties": props}


def _minimal_template(env: dict) -> dict:
    resources = {name: {"Type": "X"} for name in ("SyncQueue", "EventsQueue", "RawMailBucket", "SecretsKey")}
    resources["Worker"] = _sam_function("app.worker", "mailbridge-dev-sync", env)
    return {"Parameters": {"Stage": {"Type": "String"}}, "Resources": resources}


def test_wiring_refuses_literal_secrets_outside_the_local_stage():
    env = {"MAILBRIDGE_SIGNING_KEY": "plain-text", "MAILBRIDGE_OPERATOR_KEY_SHA256": "{{resolve:ssm:x}}"}
    with pytest.raises(TemplateError, match="MAILBRIDGE_SIGNING_KEY"):
        wire_template(_minimal_template(env), "dev")


def test_wiring_enables_partial_batch_responses_on_the_queue_resource():
    env = {"MAILBRIDGE_SIGNING_KEY": "{{resolve:secretsmanager:a:SecretString:b}}",
           "MAILBRIDGE_OPERATOR_KEY_SHA256": "{{resolve:secretsmanager:a:SecretString:c}}"}
    worker = wire_template(_minimal_template(env), "dev")["Resources"]["Worker"]["Properties"]
    source = worker["Events"]["Src"]["Properties"]
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Queue"] == {"Fn::GetAtt": ["SyncQueue", "Arn"]}
    assert worker["FunctionName"] == "mailbridge-dev-worker"
    assert worker["Environment"]["Variables"]["MAILBRIDGE_SYNC_QUEUE_URL"] == {"Ref": "SyncQueue"}


def test_api_gateway_answers_its_own_errors_as_problems():
    """API Gateway's default 403 {"message": "Missing Authentication Token"} answered a path or method no route
    serves (and its 413/429/5xx answers were not problem+json either)."""
    env = {"MAILBRIDGE_SIGNING_KEY": "{{resolve:secretsmanager:a:SecretString:b}}",
           "MAILBRIDGE_OPERATOR_KEY_SHA256": "{{resolve:secretsmanager:a:SecretString:c}}"}
    template = _minimal_template(env)
    template["Resources"]["RestAPI"] = {"Type": "AWS::Serverless::Api", "Properties": {}}
    resources = wire_template(template, "dev")["Resources"]
    responses = {r["Properties"]["ResponseType"]: r["Properties"] for r in resources.values()
                 if r["Type"] == "AWS::ApiGateway::GatewayResponse"}
    assert {"MISSING_AUTHENTICATION_TOKEN", "REQUEST_TOO_LARGE", "THROTTLED", "INTEGRATION_FAILURE",
            "INTEGRATION_TIMEOUT"} <= set(responses)
    for props in responses.values():
        assert props["RestApiId"] == {"Ref": "RestAPI"}
        assert props["ResponseParameters"]["gatewayresponse.header.Content-Type"] == "'application/problem+json'"
        problem = json.loads(props["ResponseTemplates"]["application/json"])
        assert problem["status"] == int(props["StatusCode"]) and problem["type"].startswith("https://mailbridge.dev/")
        assert problem["title"] and problem["detail"]
    missing = json.loads(responses["MISSING_AUTHENTICATION_TOKEN"]["ResponseTemplates"]["application/json"])
    assert missing["type"].endswith("/not-found") and missing["status"] == 404
    assert responses["THROTTLED"]["ResponseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"


@pytest.mark.slow
def test_packaged_template_is_wired_and_passes_cfn_lint(tmp_path):
    from infra.package import package
    target = package("dev", tmp_path)
    result = subprocess.run([CFN_LINT, str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    packaged = load_cfn_yaml(str(target))
    functions = {r["Properties"]["Handler"]: r["Properties"] for r in packaged["Resources"].values()
                 if r["Type"] == "AWS::Serverless::Function"}
    sqs_sources = [e["Properties"] for f in functions.values() for e in (f.get("Events") or {}).values()
                   if e["Type"] == "SQS"]
    assert {s["Queue"]["Fn::GetAtt"][0] for s in sqs_sources} == {"SyncQueue", "CheckQueue", "EventsQueue"}
    assert all(s["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for s in sqs_sources)
    for function in functions.values():
        for event in (function.get("Events") or {}).values():
            if event["Type"] == "SQS":
                assert event["Properties"]["ScalingConfig"] == {
                    "MaximumConcurrency": function["ReservedConcurrentExecutions"]}
    windows = {s["Queue"]["Fn::GetAtt"][0]: s.get("MaximumBatchingWindowInSeconds", 0) for s in sqs_sources}
    assert windows == {"SyncQueue": 0, "CheckQueue": 10, "EventsQueue": 0}   # checks wait to fill a batch
    for props in functions.values():
        variables = props["Environment"]["Variables"]
        assert variables["MAILBRIDGE_RAW_BUCKET"] == {"Ref": "RawMailBucket"}
        assert variables["MAILBRIDGE_SIGNING_KEY"].startswith("{{resolve:secretsmanager:")
    assert (tmp_path / "deployment.zip").stat().st_size > 0
    with zipfile.ZipFile(tmp_path / "deployment.zip") as shipped:   # the console and /docs assets ship with the API
        assert {"chalicelib/console/static/index.html", "chalicelib/console/static/docs.css"} <= set(shipped.namelist())
