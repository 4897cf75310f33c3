"""Token checks: names, lifetime, leeway, issuer and audience."""
from __future__ import annotations

import time

import jwt
import pytest

from chalicelib.api.auth import TokenPolicy, authenticate, issue_token, is_valid_name
from chalicelib.api.errors import UnauthorizedError

SECRET = "unit-test-secret-0123456789abcdef0123"
POLICY = TokenPolicy(SECRET, max_lifetime_s=3600)


def bearer(**claims) -> dict[str, str]:
    now = int(time.time())
    base = {"sub": "ann", "tenant": "acme", "iat": now, "exp": now + 600}
    merged = {k: v for k, v in {**base, **claims}.items() if v is not None}
    return {"Authorization": "Bearer " + jwt.encode(merged, SECRET, algorithm="HS256")}


def refused(headers, policy=POLICY) -> str:
    with pytest.raises(UnauthorizedError) as caught:
        authenticate(headers, policy)
    return caught.value.message


def test_a_valid_token_gives_its_principal():
    principal = authenticate(bearer(roles=["operator"]), POLICY)
    assert (principal.user, principal.tenant, principal.roles) == ("ann", "acme", frozenset({"operator"}))


def test_without_roles_a_principal_has_none():
    assert authenticate(bearer(), POLICY).roles == frozenset()


@pytest.mark.parametrize("roles", ["operator", [1], [["operator"]], {"operator": True}, ["operator", None]])
def test_roles_must_be_a_list_of_strings(roles):
    """A string is no list: read as one, "operator" would grant the roles o, p, e, r, a, t."""
    assert "roles" in refused(bearer(roles=roles))


@pytest.mark.parametrize("tenant", ["a#Y#x", "acme\n", "acme\r\n", "\nacme", "ac me", "a/b", "", "x" * 65,
                                    "ジョブ", "acme\x00", "T#acme", "a:b"])
def test_tenant_names_outside_the_pattern_are_refused(tenant):
    assert "tenant" in refused(bearer(tenant=tenant))


@pytest.mark.parametrize("user", ["ann\n", "a#b", "", "u" * 65, "ann bob"])
def test_user_names_outside_the_pattern_are_refused(user):
    assert "sub" in refused(bearer(sub=user))


def test_names_fullmatch_the_pattern():
    assert is_valid_name("acme-1.prod_eu") and is_valid_name("x" * 64)
    assert not is_valid_name("acme\n") and not is_valid_name(7) and not is_valid_name(None)


def test_the_reserved_prefix_stays_reserved():
    assert "reserved" in refused(bearer(tenant="_system"))


def test_exp_is_required():
    assert "exp" in refused(bearer(exp=None))


def test_a_token_living_longer_than_the_maximum_is_refused():
    now = int(time.time())
    assert "longer" in refused(bearer(iat=now, exp=now + 3600 + 31))
    authenticate(bearer(iat=now, exp=now + 3600 + 29), POLICY)  # within the leeway


def test_without_iat_the_lifetime_counts_from_now():
    now = int(time.time())
    assert "longer" in refused(bearer(iat=None, exp=now + 2 * 3600))
    authenticate(bearer(iat=None, exp=now + 1800), POLICY)


def test_expiry_has_a_leeway_of_about_30_seconds():
    now = int(time.time())
    authenticate(bearer(iat=now - 600, exp=now - 10), POLICY)
    assert refused(bearer(iat=now - 600, exp=now - 45)) == "token has expired"


def test_a_token_issued_in_the_future_is_refused():
    now = int(time.time())
    assert "iat" in refused(bearer(iat=now + 600, exp=now + 1200))


def test_issuer_and_audience_are_checked_when_configured():
    policy = TokenPolicy(SECRET, max_lifetime_s=3600, issuer="https://id.example", audience="jobpipe")
    authenticate(bearer(iss="https://id.example", aud="jobpipe"), policy)
    for claims, why in (({"iss": "https://evil.example", "aud": "jobpipe"}, "iss"),
                        ({"iss": "https://id.example", "aud": "other"}, "aud"),
                        ({"aud": "jobpipe"}, "iss"), ({"iss": "https://id.example"}, "aud")):
        assert why in refused(bearer(**claims), policy).lower(), claims


def test_issuer_and_audience_are_ignored_when_not_configured():
    authenticate(bearer(iss="anyone", aud="anything"), POLICY)


def test_issue_token_makes_tokens_the_policy_accepts():
    token = issue_token(SECRET, user="dev", tenant="dev", roles=["admin", "operator"], ttl_s=3600,
                        issuer="i", audience="a")
    policy = TokenPolicy(SECRET, max_lifetime_s=3600, issuer="i", audience="a")
    assert authenticate({"Authorization": f"Bearer {token}"}, policy).roles == {"admin", "operator"}


def signed(claims_json: str) -> dict[str, str]:
    """A token carrying these claims exactly as written (json.dumps cannot write some of them)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(claims_json.encode())
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return {"Authorization": f"Bearer {signing_input}.{b64(signature)}"}


@pytest.mark.parametrize("dates", [
    '"exp": "{exp}"',                       # a NumericDate is a JSON number (RFC 7519 2), not text
    '"exp": {exp}, "iat": "{now}"',
    '"exp": {exp}, "nbf": "{now}"',
    '"exp": {exp}, "nbf": true',            # a JSON bool is no date either (Python counts it an int)
])
def test_dates_that_are_not_json_numbers_are_refused_not_an_error(dates):
    """PyJWT reads "1700000000" as a date; the lifetime check then subtracted text from a number
    (TypeError: a 500 for a token the issuer signed)."""
    now = int(time.time())
    claims = '{"sub": "ann", "tenant": "acme", ' + dates.format(exp=now + 600, now=now) + "}"
    assert "numeric" in refused(signed(claims))


@pytest.mark.parametrize("dates", ['"exp": 1{zeros}', '"exp": {exp}.5, "iat": -1{zeros}'])
def test_a_date_beyond_any_clock_is_a_token_living_too_long(dates):
    """An exp of 10**400 is an int PyJWT accepts; exp - now overflowed a float (OverflowError, a 500)."""
    now = int(time.time())
    claims = '{"sub": "ann", "tenant": "acme", ' + dates.format(exp=now + 600, zeros="0" * 400) + "}"
    assert "longer" in refused(signed(claims))


@pytest.mark.parametrize("token", ["\ud800", "{token}\udcff", "{token}é", "😀.😀.😀", "{token}\x00"])
def test_a_token_that_is_not_ascii_is_refused_not_an_error(token):
    """A JWT is base64url parts joined by dots: ASCII. A header holding a lone surrogate (a
    Lambda event's JSON can carry its escape) made PyJWT's encode raise UnicodeEncodeError,
    a 500."""
    valid = bearer()["Authorization"].removeprefix("Bearer ")
    message = refused({"Authorization": "Bearer " + token.format(token=valid)})
    assert message.startswith("invalid token")


def test_a_token_past_the_lifetime_names_the_bound_as_the_docs_write_numbers():
    now = int(time.time())
    message = refused(bearer(iat=now, exp=now + 2 * 86_400), TokenPolicy(SECRET, max_lifetime_s=86_400))
    assert message == "token lives longer than the 86,400 s this deployment allows"


def test_the_scheme_is_read_whatever_its_case():
    """RFC 7235 2.1: an auth scheme is case-insensitive; some clients send `bearer`."""
    for scheme in ("bearer", "BEARER", "BeArEr"):
        header = {"Authorization": bearer()["Authorization"].replace("Bearer", scheme, 1)}
        assert authenticate(header, POLICY).tenant == "acme", scheme


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer   ", "Bearer \t"])
def test_a_bearer_scheme_without_a_token_is_a_missing_token(header):
    assert refused({"Authorization": header}).startswith("missing bearer token")


def test_a_token_living_exactly_the_maximum_and_the_leeway_is_accepted():
    """The bound is inclusive: `exp - iat` may be `max_lifetime_s` plus the 30 s of clock skew."""
    now = int(time.time())
    authenticate(bearer(iat=now, exp=now + 3600 + 30), POLICY)
    assert "longer" in refused(bearer(iat=now, exp=now + 3600 + 31))


def test_an_unsigned_token_is_refused():
    """`alg: none` (RFC 7519 6): a token anyone can write, naming any tenant, is no token."""
    now = int(time.time())
    unsigned = jwt.encode({"sub": "ann", "tenant": "acme", "iat": now, "exp": now + 600}, None, algorithm="none")
    assert refused({"Authorization": f"Bearer {unsigned}"}).startswith("invalid token")


@pytest.mark.parametrize("unset", [{"issuer": ""}, {"audience": ""}])
def test_an_empty_issuer_or_audience_is_none_configured(unset):
    """An empty string configures nothing, as an absent setting: a token without `iss` or `aud`
    is accepted, not refused for missing a claim no one asked for."""
    policy = TokenPolicy(SECRET, max_lifetime_s=3600, **unset)
    assert authenticate(bearer(), policy).tenant == "acme"


def test_issue_token_writes_the_claims_it_is_given_and_no_others():
    """A token made without roles, issuer or audience carries an empty role list (a null would be
    refused as no list) and no `iss` or `aud` at all; `iat` is written and `exp` is `ttl_s` past it."""
    claims = jwt.decode(issue_token(SECRET, user="dev", tenant="dev", ttl_s=600), SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "tenant", "roles", "iat", "exp"}
    assert (claims["sub"], claims["tenant"], claims["roles"]) == ("dev", "dev", [])
    assert claims["exp"] - claims["iat"] == 600 and abs(claims["iat"] - time.time()) < 60


def test_issue_tokens_default_lifetime_is_hours_and_within_what_a_deployment_allows():
    """Tests and `make run` sign tokens without a lifetime: one must last a working session
    (hours, not seconds that the leeway alone would carry), and the default policy accept it."""
    token = issue_token(SECRET, user="dev", tenant="dev")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] >= 3600
    assert authenticate({"Authorization": f"Bearer {token}"}, TokenPolicy(SECRET)).tenant == "dev"


def test_names_may_carry_upper_case_letters():
    """The pattern is letters of either case: an identity service's `Acme-EU` is a tenant."""
    principal = authenticate(bearer(sub="Ann.B", tenant="Acme-EU"), POLICY)
    assert (principal.user, principal.tenant) == ("Ann.B", "Acme-EU")


def test_the_header_is_read_under_a_lower_case_name():
    """HTTP/2 and API Gateway's HTTP APIs send header names in lower case; a plain mapping of
    them is read as Chalice's case-insensitive one is."""
    header = bearer()["Authorization"]
    assert authenticate({"authorization": header}, POLICY).tenant == "acme"


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer:", "JWT"])
def test_a_token_under_another_scheme_is_a_missing_bearer_token(scheme):
    """Only `Bearer` carries a JWT: a valid token sent as Basic credentials is not read as one."""
    token = bearer()["Authorization"].removeprefix("Bearer ")
    assert refused({"Authorization": f"{scheme} {token}"}).startswith("missing bearer token")


def test_whitespace_around_the_token_is_not_part_of_it():
    """A client that pads the header (`Bearer  <JWT> `) sends the same token."""
    token = bearer()["Authorization"].removeprefix("Bearer ")
    assert authenticate({"Authorization": f"Bearer  {token}\t"}, POLICY).tenant == "acme"


def test_an_iat_of_zero_is_a_time_the_lifetime_counts_from():
    """`iat: 0` is the epoch, not an absent claim: a token claiming issue then lives decades."""
    now = int(time.time())
    assert "longer" in refused(bearer(iat=0, exp=now + 600))
