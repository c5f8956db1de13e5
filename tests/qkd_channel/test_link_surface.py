"""The public surface of ``qkd_channel.link`` is deliberate."""

import qkd_channel.link as link

EXPECTED = {
    "secret_length",
    "epsilon_budget",
    "certify",
    "asymptotic_key_rate",
    "KeyDesign",
    "FiniteKeyBounds",
    "EpsilonTerm",
    "AliceRecord",
    "BRISTOL_CLAVIS2",
    "BRISTOL_MEASUREMENTS",
    "BeamSplitting",
    "BobRecord",
    "DECOY",
    "DecoyBounds",
    "DecoyCounts",
    "DecoyObservation",
    "Eavesdropper",
    "FiniteKeyRate",
    "GYS_2005",
    "InterceptResend",
    "KeyRate",
    "LinkParameters",
    "LinkRun",
    "PhotonNumberSplitting",
    "Photons",
    "SIGNAL",
    "VACUUM",
    "binary_entropy",
    "bristol_clavis2",
    "count_run",
    "decoy_bounds",
    "estimate_key_rate",
    "expected_counts",
    "expected_observation",
    "fibre",
    "finite_key_length",
    "finite_key_rate",
    "key_rate_from_observation",
    "observation_from_arrivals",
    "secret_key_rate",
    "simulate",
}


def test_exported_names_are_exactly_the_documented_api() -> None:
    assert set(link.__all__) == EXPECTED
    for name in link.__all__:
        assert getattr(link, name) is not None
