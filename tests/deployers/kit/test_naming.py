"""Names and labels: every platform's labels say the same facts under its own rules, a package
digest survives every platform, and generation names parse back."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelport.deployers.kit.naming import (
    Facts,
    Platform,
    generation_name,
    label_key,
    labels,
    next_generation,
    parse_generation,
    read_labels,
    resource_name,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4
FINGERPRINT = "sha256:" + "fedcba9876543210" * 4
OCI_DIGEST = "sha256:" + "00112233445566778899aabbccddeeff" * 2
FACTS = Facts(
    package_digest=DIGEST,
    package_name="Churn Model v2.1",
    package_version="2024.05.01+build.7",
    flavor="onnx",
    modelport_version="0.1.0",
    deployment="churn",
    target="sagemaker",
    generation=3,
    signature_fingerprint=FINGERPRINT,
    oci_digest=OCI_DIGEST,
)
#: What each platform allows, keys and values (from its documentation).
RULES = {
    Platform.AWS: (re.compile(r"^[\w .:/=+\-@]{1,128}$"), re.compile(r"^[\w .:/=+\-@]{0,256}$")),
    Platform.AZURE: (re.compile(r"^[^<>%&\\?/]{1,512}$"), re.compile(r"(?s)^.{0,256}$")),
    Platform.GCP: (re.compile(r"^[a-z][a-z0-9_-]{0,62}$"), re.compile(r"^[a-z0-9_-]{0,63}$")),
    Platform.KUBERNETES: (
        re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"),
        re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$"),
    ),
}


def test_docker_labels_are_the_images_and_containers_keys() -> None:
    found = labels(Platform.DOCKER, FACTS)
    assert found["dev.modelport.package.digest"] == DIGEST
    assert found["dev.modelport.deployment"] == "churn"
    assert found["dev.modelport.generation"] == "3"
    assert label_key(Platform.DOCKER, "target") == "dev.modelport.target"
    assert read_labels(Platform.DOCKER, found) == FACTS


@pytest.mark.parametrize("platform", list(RULES))
def test_every_platform_gets_labels_it_accepts(platform: Platform) -> None:
    key_rule, value_rule = RULES[platform]
    found = labels(platform, FACTS)
    for key, value in found.items():
        assert key_rule.match(key), (platform, key)
        assert value_rule.match(value), (platform, key, value)
    # The digest, the deployment and the generation read back exactly, on every platform.
    back = read_labels(platform, found)
    assert back.package_digest == DIGEST
    assert (back.signature_fingerprint, back.oci_digest) == (FINGERPRINT, OCI_DIGEST)
    assert (back.deployment, back.target, back.generation) == ("churn", "sagemaker", 3)


def test_a_digest_is_split_where_a_value_cannot_hold_it() -> None:
    gcp = labels(Platform.GCP, Facts(package_digest=DIGEST))
    assert gcp == {
        "modelport-package-digest": "sha256-" + DIGEST[7:39],
        "modelport-package-digest-2": DIGEST[39:],
    }
    assert labels(Platform.AWS, Facts(package_digest=DIGEST)) == {
        "modelport:package-digest": DIGEST
    }


@pytest.mark.parametrize(
    ("platform", "prefix"), [(Platform.GCP, "modelport-"), (Platform.KUBERNETES, "modelport.dev/")]
)
def test_every_digest_fact_is_split_under_its_own_tail(platform: Platform, prefix: str) -> None:
    facts = Facts(package_digest=DIGEST, signature_fingerprint=FINGERPRINT, oci_digest=OCI_DIGEST)
    found = labels(platform, facts)
    assert found == {
        f"{prefix}package-digest": "sha256-" + DIGEST[7:39],
        f"{prefix}package-digest-2": DIGEST[39:],
        f"{prefix}signature-fingerprint": "sha256-" + FINGERPRINT[7:39],
        f"{prefix}signature-fingerprint-2": FINGERPRINT[39:],
        f"{prefix}oci-digest": "sha256-" + OCI_DIGEST[7:39],
        f"{prefix}oci-digest-2": OCI_DIGEST[39:],
    }
    assert read_labels(platform, found) == facts
    # One digest alone reads back alone; a head without its tail is not taken for a digest.
    alone = labels(platform, Facts(oci_digest=OCI_DIGEST))
    assert read_labels(platform, alone) == Facts(oci_digest=OCI_DIGEST)
    del alone[f"{prefix}oci-digest-2"]
    assert read_labels(platform, alone).oci_digest == "sha256-" + OCI_DIGEST[7:39]


@pytest.mark.parametrize("platform", list(Platform))
def test_signature_and_oci_digests_round_trip_on_every_platform(platform: Platform) -> None:
    facts = Facts(signature_fingerprint=FINGERPRINT, oci_digest=OCI_DIGEST)
    assert read_labels(platform, labels(platform, facts)) == facts
    assert read_labels(platform, labels(platform, Facts(package_digest=DIGEST))) == Facts(
        package_digest=DIGEST
    )


def test_unset_facts_are_left_out_and_unreadable_ones_are_none() -> None:
    assert labels(Platform.AWS, Facts()) == {}
    assert read_labels(Platform.AWS, {"modelport:generation": "soon"}).generation is None
    assert read_labels(Platform.GCP, None) == Facts()


@given(st.text(min_size=1, max_size=300))
def test_any_name_fits_every_platform(text: str) -> None:
    for platform, (_, value_rule) in RULES.items():
        value = labels(platform, Facts(package_name=text))[
            "modelport"
            + (":" if platform is Platform.AWS else "." if platform is Platform.KUBERNETES else "-")
            + ("dev/" if platform is Platform.KUBERNETES else "")
            + "package-name"
        ]
        assert value_rule.match(value), (platform, value)


def test_resource_names() -> None:
    assert resource_name("modelport", "Churn_Model") == "modelport-churn-model"
    assert resource_name("--") == "modelport"
    long_a = resource_name("x" * 80 + "a", max_length=32)
    long_b = resource_name("x" * 80 + "b", max_length=32)
    assert len(long_a) == len(long_b) == 32 and long_a != long_b
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", long_a)


def test_generations() -> None:
    assert generation_name("churn", 1) == "churn-g1"
    assert parse_generation("churn-g12", "churn") == 12
    assert parse_generation("churn-g12", "chur") is None
    assert parse_generation("churn", "churn") is None
    assert next_generation(["churn-g1", "churn-g3", "other-g9", "churn"], "churn") == 4
    assert next_generation([], "churn") == 1
    name = generation_name("a" * 70, 7, max_length=63)
    assert len(name) == 63 and parse_generation(name, "a" * 70) == 7
    with pytest.raises(ValueError, match="start at 1"):
        generation_name("churn", 0)
