"""The package weight bench attributes each shipped zip entry to the distribution that installed it (through
the installed RECORDs, so the `google/` namespace splits by distribution) and each distribution to the runtime
requirements whose closure holds it."""
import zipfile

from bench.package_weight.attribution import OWN, attribute


def test_entries_are_attributed_to_their_distribution_and_requirements(tmp_path):
    shipped = tmp_path / "deployment.zip"
    with zipfile.ZipFile(shipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", "x = 1\n" * 100)
        archive.writestr("chalicelib/__pycache__/config.cpython-311.pyc", b"\0" * 500)
        archive.writestr("pydantic/main.pyc", b"\1" * 800)                       # sourceless bytecode
        archive.writestr("google/auth/__pycache__/jwt.cpython-311.pyc", b"\2" * 300)
        archive.writestr("google/api_core/exceptions.py", "pass\n" * 50)
        archive.writestr("cryptography/__init__.py", "pass\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pydantic==2.0  # models\ngoogle-api-python-client==2.0\nmsal==1.0\n")

    result = attribute(shipped, requirements)

    owners = result["distributions"]
    assert set(owners) == {OWN, "pydantic", "google-auth", "google-api-core", "cryptography"}
    assert owners["pydantic"]["required_by"] == ["pydantic"]
    assert owners["google-api-core"]["required_by"] == ["google-api-python-client"]
    # google-auth hard-requires cryptography; msal does too
    assert owners["cryptography"]["required_by"] == ["google-api-python-client", "msal"]
    assert owners[OWN]["required_by"] == []
    with zipfile.ZipFile(shipped) as archive:
        total = sum(i.compress_size + 30 + len(i.filename) for i in archive.infolist())
    assert result["own_zip_bytes"] + result["third_party_zip_bytes"] == total
    assert result["own_zip_bytes"] > 0 and result["third_party_zip_bytes"] > result["own_zip_bytes"]
