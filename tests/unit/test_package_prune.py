"""Guards the Lambda package carrying googleapiclient's ~110 MB of discovery documents (only Gmail's is used)
— or losing Gmail's, which `static_discovery=True` needs — and botocore's models of every AWS service
(~27 MB) when the functions call five."""
from __future__ import annotations

import zipfile

from infra.package import KEPT_BOTOCORE_SERVICES, dropped, prune_deployment, pruned_endpoints


def test_only_gmail_discovery_document_is_kept(tmp_path):
    source, target = tmp_path / "in.zip", tmp_path / "out.zip"
    with zipfile.ZipFile(source, "w") as zf:
        for name in ("gmail.v1.json", "drive.v3.json", "youtube.v3.json", "index.json"):
            zf.writestr(f"googleapiclient/discovery_cache/documents/{name}", "{}" * 5000)
        zf.writestr("googleapiclient/discovery.py", "code")
        zf.writestr("app.py", "app")
    before, after = prune_deployment(source, target)
    with zipfile.ZipFile(target) as zf:
        names = set(zf.namelist())
    assert names == {"googleapiclient/discovery_cache/documents/gmail.v1.json", "googleapiclient/discovery.py",
                     "app.py"}
    assert after < before


def test_only_the_aws_services_the_functions_call_keep_their_botocore_models(tmp_path):
    source, target = tmp_path / "in.zip", tmp_path / "out.zip"
    with zipfile.ZipFile(source, "w") as zf:
        for service in ("dynamodb", "s3", "sqs", "kms", "sts", "ec2", "sagemaker"):
            zf.writestr(f"botocore/data/{service}/2012-01-01/service-2.json.gz", "x" * 1000)
        zf.writestr("botocore/data/endpoints.json", '{"partitions": []}')
        zf.writestr("botocore/client.py", "code")
    prune_deployment(source, target)
    with zipfile.ZipFile(target) as zf:
        services = {name.split("/")[2] for name in zf.namelist() if name.count("/") > 2}
        assert services == {"dynamodb", "s3", "sqs", "kms", "sts"}
        assert {"botocore/data/endpoints.json", "botocore/client.py"} <= set(zf.namelist())


def test_every_aws_client_the_code_makes_is_kept():
    """Guards against a new boto3 client whose model would be missing from the Lambda package."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "chalicelib"
    used = {m for path in root.rglob("*.py")
            for m in re.findall(r"""(?:aws\.client|boto3\.client|client)\(\s*["']([a-z0-9-]+)["']""",
                                path.read_text())}
    assert used and used <= KEPT_BOTOCORE_SERVICES, used - KEPT_BOTOCORE_SERVICES


def test_clients_load_from_a_pruned_botocore_data_dir(tmp_path):
    """The kept models are enough to build every client the functions use."""
    import shutil
    from pathlib import Path

    import botocore
    import botocore.session
    data = Path(botocore.__file__).parent / "data"
    pruned = tmp_path / "data"
    pruned.mkdir()
    for entry in data.iterdir():
        if entry.is_file() or entry.name in KEPT_BOTOCORE_SERVICES:
            (shutil.copytree if entry.is_dir() else shutil.copy)(entry, pruned / entry.name)
    (pruned / "endpoints.json").write_bytes(pruned_endpoints((data / "endpoints.json").read_bytes()))
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths[:] = [str(pruned)]
    for service in KEPT_BOTOCORE_SERVICES:
        session.create_client(service, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    for region, url in (("eu-west-1", "https://dynamodb.eu-west-1.amazonaws.com"),
                        ("cn-north-1", "https://dynamodb.cn-north-1.amazonaws.com.cn")):
        client = session.create_client("dynamodb", region_name=region, aws_access_key_id="x",
                                       aws_secret_access_key="y")
        assert client.meta.endpoint_url == url


def test_the_endpoint_table_keeps_only_the_services_called():
    """Guards against every cold process parsing botocore's 1.2 MB endpoint table for ~440 services it never calls
    (~60 ms of CPU) — and against dropping a partition or a kept service's entry."""
    import json
    from pathlib import Path

    import botocore
    source = json.loads((Path(botocore.__file__).parent / "data" / "endpoints.json").read_bytes())
    table = json.loads(pruned_endpoints(json.dumps(source).encode()))
    assert [p["partition"] for p in table["partitions"]] == [p["partition"] for p in source["partitions"]]
    aws = next(p for p in table["partitions"] if p["partition"] == "aws")
    assert set(aws["services"]) == KEPT_BOTOCORE_SERVICES
    assert aws["regions"] == next(p for p in source["partitions"] if p["partition"] == "aws")["regions"]


def test_files_lambda_never_reads_and_unused_powertools_are_dropped():
    """Guards against shipping type stubs, stale bytecode, wheel RECORDs, packages' own tests and Powertools'
    REST resolver (2.2 MB with its Swagger UI), CA bundles certifi's stands in for — and against dropping what
    the functions import."""
    for name in ("pydantic/main.pyi", "pydantic/py.typed", "botocore/__pycache__/client.cpython-311.pyc",
                 "chalicelib/__pycache__/aws.cpython-311.pyc", "__pycache__/app.cpython-311.pyc",
                 "boto3-1.44.5.dist-info/RECORD", "cffi/tests/test_c.py",
                 "aws_lambda_powertools/event_handler/openapi/swagger_ui/swagger-ui-bundle.min.js",
                 "aws_lambda_powertools/utilities/idempotency/base.py", "botocore/cacert.pem",
                 "httplib2/cacerts.txt", "dateutil/zoneinfo/dateutil-zoneinfo.tar.gz"):
        assert dropped(name), name
    for name in ("app.py", "chalicelib/console/static/index.html", "boto3-1.44.5.dist-info/METADATA",
                 "aws_lambda_powertools/logging/logger.py", "aws_lambda_powertools/utilities/batch/base.py",
                 "aws_lambda_powertools/utilities/data_classes/sqs_event.py",
                 "aws_lambda_powertools/shared/functions.py",
                 "regex/_regex.cpython-311-x86_64-linux-gnu.so", "pydantic/main.py", "certifi/cacert.pem",
                 "dateutil/zoneinfo/__init__.py"):
        assert not dropped(name), name


def test_shared_libraries_are_stripped_and_compressed_harder(tmp_path):
    """Guards against shipping the wheels' unstripped libraries (cryptography's alone carries ~3 MB of symbols)."""
    import regex
    from pathlib import Path
    library = next(Path(regex.__file__).parent.glob("_regex*.so"))
    source, target = tmp_path / "in.zip", tmp_path / "out.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(library, f"regex/{library.name}")
        zf.writestr("notes/readme.so.txt", "not a library")
    prune_deployment(source, target)
    with zipfile.ZipFile(target) as zf:
        shipped = zf.read(f"regex/{library.name}")
        assert zf.read("notes/readme.so.txt") == b"not a library"
    assert shipped.startswith(b"\x7fELF") and len(shipped) < library.stat().st_size * 0.6


def test_google_api_cores_grpc_dependencies_are_dropped():
    """Guards against shipping protobuf, the common protos, proto-plus and OpenTelemetry, which googleapiclient
    never imports — and against dropping the google-api-core, google-auth and googleapiclient code it does."""
    for name in ("google/protobuf/struct_pb2.py", "google/_upb/_message.abi3.so", "google/api/http_pb2.py",
                 "google/rpc/status_pb2.py", "google/type/date_pb2.py", "google/longrunning/operations_pb2.py",
                 "proto/message.py", "opentelemetry/trace/__init__.py", "protobuf-7.36.2.dist-info/METADATA",
                 "googleapis_common_protos-1.76.0.dist-info/METADATA"):
        assert dropped(name), name
    for name in ("google/api_core/client_options.py", "google/api_core/universe.py", "google/auth/jwt.py",
                 "google/oauth2/id_token.py", "googleapiclient/discovery.py", "google_auth_httplib2.py",
                 "google_api_core-2.44.0.dist-info/METADATA", "apiclient/__init__.py"):
        assert not dropped(name), name
