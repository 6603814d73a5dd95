"""Post-processing of the template `chalice package --merge-template infra/resources.yaml` writes.

Chalice emits SAM functions that know nothing about the resources of `infra/resources.yaml`. This module
(pure: dict in, dict out) does what Chalice cannot:

- SQS event sources get `FunctionResponseTypes: [ReportBatchItemFailures]` (partial batch responses,
  AWS Lambda developer guide "Handling errors for an SQS event source") and point at the queue resources
  with `Fn::GetAtt <Queue>.Arn` instead of an ARN Chalice built from a queue name. Their maximum concurrency
  (`ScalingConfig`) is the function's reserved concurrency: event source mappings do not account for reserved
  concurrency, so without it the pollers take more batches than the function may run, and each throttled
  batch returns after the visibility timeout with its receive count raised — throttling would dead-letter
  jobs (AWS Lambda developer guide, "Configuring scaling behavior for SQS event source mappings": do not set
  the maximum concurrency above the reserved concurrency; its minimum is 2).
- Environment variables that name resources become `Ref`/`GetAtt`/`Sub` of those resources, so names can
  never drift between the functions and the stack.
- Functions get Chalice's deploy-time names (`mailbridge-<stage>` for the REST API,
  `mailbridge-<stage>-<name>` otherwise) so the alarms in resources.yaml find them.
- The Lambda role gets least-privilege access to the stage's tables (and their indexes), queues, bucket
  and KMS key (SAM adds no SQS poller permissions when a function has an explicit `Role`).
- The `Stage` parameter is pinned to the packaged stage.
- API Gateway's own answers — a method or path no route serves (`MISSING_AUTHENTICATION_TOKEN`, which by
  default is a 403 `{"message": "Missing Authentication Token"}`, or echoes an `Authorization` header it cannot
  parse), a body over its 10 MB limit, its throttling, an integration that fails or times out — become
  problem+json of the API's one vocabulary (`chalicelib.api.errors`) with fixed bodies: nothing of the request
  is echoed (API Gateway developer guide, "Gateway responses").
"""
from __future__ import annotations

import json
from typing import Any

from chalicelib.api import errors

APP_NAME = "mailbridge"
PLACEHOLDER = "set-by-infra.package"
SECRET_ENV = ("MAILBRIDGE_OPERATOR_KEY_SHA256", "MAILBRIDGE_SIGNING_KEY")

# env var -> CloudFormation value (resources defined in infra/resources.yaml)
ENV_WIRING: dict[str, Any] = {
    "MAILBRIDGE_STAGE": {"Ref": "Stage"},
    "MAILBRIDGE_TABLE_PREFIX": {"Fn::Sub": "mailbridge-${Stage}-"},
    "MAILBRIDGE_SYNC_QUEUE_URL": {"Ref": "SyncQueue"},
    "MAILBRIDGE_SYNC_QUEUE_NAME": {"Fn::GetAtt": ["SyncQueue", "QueueName"]},
    "MAILBRIDGE_CHECK_QUEUE_URL": {"Ref": "CheckQueue"},
    "MAILBRIDGE_CHECK_QUEUE_NAME": {"Fn::GetAtt": ["CheckQueue", "QueueName"]},
    "MAILBRIDGE_EVENTS_QUEUE_URL": {"Ref": "EventsQueue"},
    "MAILBRIDGE_EVENTS_QUEUE_NAME": {"Fn::GetAtt": ["EventsQueue", "QueueName"]},
    "MAILBRIDGE_RAW_BUCKET": {"Ref": "RawMailBucket"},
    "MAILBRIDGE_KMS_KEY_ID": {"Ref": "SecretsKey"},
}

MIN_EVENT_SOURCE_CONCURRENCY = 2     # ScalingConfig.MaximumConcurrency: 2-1000 (CloudFormation reference)

# queue name suffix (as Chalice writes it into the event source ARN) -> queue resource
QUEUES = {"sync": "SyncQueue", "check": "CheckQueue", "events": "EventsQueue"}


# API Gateway response type -> the problem it answers (a static body: templates here see no request data)
GATEWAY_PROBLEMS: dict[str, errors.ApiError] = {
    "MISSING_AUTHENTICATION_TOKEN": errors.NotFound(
        "No route serves this method and path (see /v1/openapi.json)."),
    "REQUEST_TOO_LARGE": errors.PayloadTooLarge("The request exceeds API Gateway's 10 MB limit."),
    "THROTTLED": errors.TooManyRequests("Too many requests; try again shortly.", retry_after=1),
    "INTEGRATION_FAILURE": errors.Unavailable("The API could not answer; try again shortly."),
    "INTEGRATION_TIMEOUT": errors.GatewayTimeout("The API did not answer in time (29 s); try again shortly."),
}


class TemplateError(Exception):
    """The packaged template cannot be wired (a resource or function is missing, a secret is literal)."""


def function_name(stage: str, handler: str) -> str:
    """Chalice's own naming: `app.app` is the REST API (`<app>-<stage>`), `app.<fn>` is `<app>-<stage>-<fn>`."""
    name = handler.split(".", 1)[1]
    return f"{APP_NAME}-{stage}" if name == "app" else f"{APP_NAME}-{stage}-{name}"


def wire_template(template: dict, stage: str) -> dict:
    resources = template["Resources"]
    for required in ("SyncQueue", "EventsQueue", "RawMailBucket", "SecretsKey"):
        if required not in resources:
            raise TemplateError(f"{required} missing: was infra/resources.yaml merged?")
    _pin_stage(template, stage)
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        props["FunctionName"] = function_name(stage, props["Handler"])
        _wire_environment(logical_id, props, stage)
        _wire_sqs_events(logical_id, props)
    _fix_log_group_references(resources)
    _grant_resource_access(resources)
    _add_gateway_responses(resources)
    return template


def _pin_stage(template: dict, stage: str) -> None:
    parameter = template.setdefault("Parameters", {}).get("Stage")
    if parameter is None:
        raise TemplateError("Stage parameter missing: was infra/resources.yaml merged?")
    parameter["Default"] = stage
    parameter["AllowedValues"] = [stage]


def _wire_environment(logical_id: str, props: dict, stage: str) -> None:
    variables = props.setdefault("Environment", {}).setdefault("Variables", {})
    for name, value in ENV_WIRING.items():
        variables[name] = value
    leftovers = [name for name, value in variables.items() if value == PLACEHOLDER]
    if leftovers:
        raise TemplateError(f"{logical_id}: no wiring for {', '.join(leftovers)}")
    if stage != "local":
        for name in SECRET_ENV:
            value = variables.get(name, "")
            if not (isinstance(value, str) and value.startswith("{{resolve:")):
                raise TemplateError(f"{logical_id}: {name} must be a CloudFormation dynamic reference "
                                    "({{resolve:secretsmanager:...}}), not a literal, in .chalice/config.json")


def _wire_sqs_events(logical_id: str, props: dict) -> None:
    for event in (props.get("Events") or {}).values():
        if event.get("Type") != "SQS":
            continue
        queue = event["Properties"]["Queue"]
        arn = queue.get("Fn::Sub", "") if isinstance(queue, dict) else str(queue)
        suffix = arn.rsplit(":", 1)[-1].rsplit("-", 1)[-1]
        if suffix not in QUEUES:
            raise TemplateError(f"{logical_id}: SQS event source {arn!r} is not a queue of resources.yaml")
        event["Properties"]["Queue"] = {"Fn::GetAtt": [QUEUES[suffix], "Arn"]}
        event["Properties"]["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
        reserved = props.get("ReservedConcurrentExecutions")
        if reserved is not None:
            if int(reserved) < MIN_EVENT_SOURCE_CONCURRENCY:
                raise TemplateError(f"{logical_id}: reserved concurrency {reserved} is below the SQS event source's "
                                    f"minimum maximum concurrency ({MIN_EVENT_SOURCE_CONCURRENCY})")
            event["Properties"]["ScalingConfig"] = {"MaximumConcurrency": int(reserved)}


def _fix_log_group_references(resources: dict) -> None:
    """Chalice 1.34 names the REST API's log group after `${ApiHandler}`, but the function is `APIHandler`."""
    by_lower = {logical_id.lower(): logical_id for logical_id in resources}
    for resource in resources.values():
        if resource.get("Type") != "AWS::Logs::LogGroup":
            continue
        name = resource["Properties"].get("LogGroupName")
        if isinstance(name, dict) and "Fn::Sub" in name and name["Fn::Sub"].startswith("/aws/lambda/${"):
            target = name["Fn::Sub"][len("/aws/lambda/${"):-1]
            if target not in resources and target.lower() in by_lower:
                name["Fn::Sub"] = "/aws/lambda/${%s}" % by_lower[target.lower()]


def _grant_resource_access(resources: dict) -> None:
    role = resources.get("DefaultRole")
    if role is None:
        return
    table_arn = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/mailbridge-${Stage}-*"
    queue_arns = [{"Fn::GetAtt": [queue, "Arn"]} for queue in QUEUES.values()]
    statements = [
        {"Sid": "Tables", "Effect": "Allow",
         "Action": ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem",
                    "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                    "dynamodb:ConditionCheckItem", "dynamodb:TransactWriteItems", "dynamodb:TransactGetItems",
                    "dynamodb:DescribeTable", "dynamodb:Scan"],
         "Resource": [{"Fn::Sub": table_arn}, {"Fn::Sub": table_arn + "/index/*"}]},
        {"Sid": "Queues", "Effect": "Allow",
         "Action": ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
         "Resource": queue_arns},
        {"Sid": "RawMail", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging",
                                                             "s3:DeleteObject"],
         "Resource": {"Fn::Sub": "${RawMailBucket.Arn}/*"}},
        {"Sid": "RawMailList", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": {"Fn::GetAtt": ["RawMailBucket", "Arn"]}},
        {"Sid": "SecretsKey", "Effect": "Allow",
         "Action": ["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt", "kms:DescribeKey"],
         "Resource": {"Fn::GetAtt": ["SecretsKey", "Arn"]}},
    ]
    policies = role["Properties"].setdefault("Policies", [])
    policies[:] = [p for p in policies if p.get("PolicyName") != "MailbridgeResources"]
    policies.append({"PolicyName": "MailbridgeResources",
                     "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}})


def _add_gateway_responses(resources: dict) -> None:
    """One `AWS::ApiGateway::GatewayResponse` per entry of `GATEWAY_PROBLEMS` on Chalice's `RestAPI`."""
    if "RestAPI" not in resources:
        return
    for response_type, problem in GATEWAY_PROBLEMS.items():
        headers = {"gatewayresponse.header.Content-Type": f"'{errors.PROBLEM_CONTENT_TYPE}'"}
        headers.update({f"gatewayresponse.header.{name}": f"'{value}'" for name, value in problem.headers.items()})
        logical_id = "GatewayResponse" + "".join(part.title() for part in response_type.split("_"))
        resources[logical_id] = {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": {
            "RestApiId": {"Ref": "RestAPI"}, "ResponseType": response_type, "StatusCode": str(problem.status),
            "ResponseParameters": headers,
            "ResponseTemplates": {"application/json": json.dumps(problem.to_problem())}}}
