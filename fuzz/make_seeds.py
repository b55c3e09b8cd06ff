#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/seed-*). Run from anywhere: python3 fuzz/make_seeds.py

Seeds follow each target's input format (see the doc comment at the top of each target). Tokens
are made with the test keys in tests/keys/ and expire in 2100, so the seeds stay meaningful.
Needs only python3 and the openssl CLI (for the RS256 signature and the JWK numbers).
"""
import base64, hashlib, hmac, json, os, re, subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "..", "tests", "keys")
HMAC_SECRET = b"an-hmac-secret-of-at-least-32-bytes-for-hs256"
ISS, AUD, FAR = "https://issuer.example", "https://api.example", 4102444800


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def hs256(header, payload, secret=HMAC_SECRET):
    msg = f"{b64(header.encode())}.{b64(payload.encode())}"
    return f"{msg}.{b64(hmac.new(secret, msg.encode(), hashlib.sha256).digest())}"


def rs256(header, payload):
    msg = f"{b64(header.encode())}.{b64(payload.encode())}"
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", os.path.join(KEYS, "rsa_private.pem")],
                         input=msg.encode(), capture_output=True, check=True).stdout
    return f"{msg}.{b64(sig)}"


def jwk_numbers():
    out = subprocess.run(["openssl", "rsa", "-pubin", "-in", os.path.join(KEYS, "rsa_public.pem"), "-noout", "-modulus"],
                         capture_output=True, check=True, text=True).stdout
    n = bytes.fromhex(out.strip().split("=")[1])
    text = subprocess.run(["openssl", "ec", "-pubin", "-in", os.path.join(KEYS, "ec_public.pem"), "-noout", "-text"],
                          capture_output=True, check=True, text=True).stdout
    pub = bytes.fromhex("".join(re.findall(r"^\s+([0-9a-f:]+)$", text, re.M)).replace(":", ""))
    assert pub[0] == 4 and len(pub) == 65
    return b64(n), b64(pub[1:33]), b64(pub[33:])


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


CLAIMS = compact({"iss": ISS, "aud": AUD, "sub": "alice", "scope": "read", "iat": 1700000000, "exp": FAR})
HS_TOKEN = hs256(compact({"alg": "HS256", "typ": "JWT"}), CLAIMS)
RS_TOKEN = rs256(compact({"alg": "RS256", "kid": "rs", "typ": "at+jwt"}), CLAIMS)

# challenge_parse: real challenges, as providers send them.
for name, value in {
    "bare": 'Bearer realm="api"',
    "invalid-token": 'Bearer realm="api", error="invalid_token", error_description="The access token expired"',
    "scope": 'Bearer realm="acme", error="insufficient_scope", scope="files.read files.write"',
    "step-up": 'Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="myACR", max_age="5"',
    "multi": 'Basic realm="x", Bearer realm="api", error="invalid_token", Negotiate abc==',
    "no-commas": 'Bearer realm="api" error="invalid_token" error_description="no commas"',
    "escapes": 'Bearer realm="a \\"quoted\\" realm\\\\", scope=read',
    "metadata": 'Bearer resource_metadata="https://api.example/.well-known/oauth-protected-resource", realm="api"',
    "two-lines": 'Basic realm="x"\nBEARER Error=invalid_token, , ,realm=acme',
    "token68": "Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXagGDAWBgkqhkiC9xIBAgIGCSqGSIb3EgECAqKCAV=",
}.items():
    write("challenge_parse", name, value)

# bearer_extraction: flags byte, URI line, header lines.
for name, (flags, lines) in {
    "valid": (0, ["/", "authorization: Bearer @valid"]),
    "lowercase-scheme": (0, ["/", "authorization: bearer @valid"]),
    "none": (0, ["/"]),
    "basic": (0, ["/", "authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l"]),
    "repeated": (0, ["/", "authorization: Bearer @valid", "authorization: Bearer @valid"]),
    "empty": (0, ["/", "authorization: Bearer "]),
    "bad-chars": (2, ["/", "authorization: Bearer @canary!@#$", "accept: application/problem+json"]),
    "expired": (2, ["/", "authorization: Bearer @expired", "accept: application/problem+json"]),
    "query": (1, ["/items?access_token=@valid&x=1"]),
    "query-and-header": (1, ["/items?access_token=@canary", "authorization: Bearer @canary"]),
    "query-off": (0, ["/items?access%5Ftoken=@valid"]),
    "query-repeated": (1, ["/?access_token=@valid&access_token=@valid"]),
    "grpc": (0x10, ["/pkg.Svc/Call", "content-type: application/grpc+proto", "authorization: Bearer @canary"]),
    "not-jwt": (0x0a, ["/", "authorization: Bearer @canary", "accept: application/problem+json"]),
}.items():
    write("bearer_extraction", name, bytes([flags]) + "\n".join(lines).encode())

# form_token: flags, method, URI, headers, empty line, body.
def form(flags, method, uri, headers, body):
    return bytes([flags]) + "\n".join([method, uri, *headers, "", body]).encode()

FORM = "content-type: application/x-www-form-urlencoded"
for name, (flags, method, headers, body) in {
    "valid": (0, "POST", [FORM, "content-length: {n}"], "access_token=@valid&x=1"),
    "charset": (0, "POST", [FORM + "; charset=utf-8", "content-length: {n}"], "a=b&access_token=@valid"),
    "header-and-body": (0, "POST", [FORM, "content-length: {n}", "authorization: Bearer @valid"], "access_token=@valid"),
    "repeated": (0, "PUT", [FORM, "content-length: {n}"], "access_token=@canary&access_token=@canary"),
    "encoded": (2, "POST", [FORM, "content-length: {n}", "accept: application/problem+json"], "access%5Ftoken=%40canary+x"),
    "get": (0, "GET", [FORM, "content-length: {n}"], "access_token=@valid"),
    "json": (0, "POST", ["content-type: application/json", "content-length: {n}"], '{"access_token":"@canary"}'),
    "no-length": (0, "POST", [FORM], "access_token=@valid"),
    "lying-length": (0x20, "POST", [FORM, "content-length: 3"], "access_token=@valid&padding=" + "x" * 40),
    "expired": (0, "POST", [FORM, "content-length: {n}"], "access_token=@expired"),
}.items():
    write("form_token", name, form(flags, method, "/submit", [h.replace("{n}", str(len(body))) for h in headers], body))

# jwt_validation: signing byte, validator byte, header line, payload.
def jwt(sign, validator, header, payload):
    return bytes([sign, validator]) + (header + "\n" + payload).encode()

for name, (s, v, header, payload) in {
    "hs": (0, 0, compact({"alg": "HS256", "typ": "JWT"}), CLAIMS),
    "rs": (1, 1, compact({"alg": "RS256", "kid": "rs"}), CLAIMS),
    "es": (2, 2, compact({"alg": "ES256", "kid": "es"}), CLAIMS),
    "all-kid-rs": (1, 3, compact({"alg": "RS256", "kid": "rs"}), CLAIMS),
    "all-kid-lies": (0, 3, compact({"alg": "HS256", "kid": "rs"}), CLAIMS),
    "at-jwt": (1, 5, compact({"alg": "RS256", "typ": "at+jwt"}), CLAIMS),
    "at-jwt-missing": (1, 5, compact({"alg": "RS256"}), CLAIMS),
    "confused": (3, 1, compact({"alg": "HS256"}), CLAIMS),
    "none": (4, 3, compact({"alg": "none"}), CLAIMS),
    "crit": (1, 1, compact({"alg": "RS256", "crit": ["exp"], "exp": 1}), CLAIMS),
    "wrong-aud": (0, 0, compact({"alg": "HS256"}), compact({"iss": ISS, "aud": ["x", "y"], "exp": FAR})),
    "aud-array": (0, 0, compact({"alg": "HS256"}), compact({"iss": ISS, "aud": ["x", AUD], "exp": FAR, "nbf": 1700000000})),
    "no-exp": (0, 0, compact({"alg": "HS256"}), compact({"iss": ISS, "aud": AUD})),
    "odd-types": (2, 2, compact({"alg": "ES256", "kid": 7, "typ": None}), compact({"iss": ISS, "aud": AUD, "exp": 1.5e300, "scp": ["a"], "amr": "pwd"})),
    "raw-hs": (6, 0, None, None),
    "raw-rs": (6, 1, None, None),
    "raw-garbage": (6, 3, None, None),
}.items():
    if name == "raw-hs":
        write("jwt_validation", name, bytes([s, v]) + HS_TOKEN.encode())
    elif name == "raw-rs":
        write("jwt_validation", name, bytes([s, v]) + RS_TOKEN.encode())
    elif name == "raw-garbage":
        write("jwt_validation", name, bytes([s, v]) + b"eyJhbGciOiJub25lIn0.e30.")
    else:
        write("jwt_validation", name, jwt(s, v, header, payload))

# jwt_validation, structured mode (signing byte >= 0x80): bytes `arbitrary` turns into a shape.
write("jwt_validation", "shape-hs", bytes([0x80, 0x00]) + bytes(range(64)))
write("jwt_validation", "shape-rs", bytes([0x81, 0x01]) + bytes(range(255, 0, -3)))
write("jwt_validation", "shape-all-typ", bytes([0x82, 0x07]) + b"\x01" * 48)

# upstream_classify: STATUS, headers, empty line, body.
for name, value in {
    "power-bi": '403\ncontent-type: application/json; charset=utf-8\n\n{"error":{"code":"TokenExpired","message":"Access token has expired, resubmit with a new access token"}}',
    "power-bi-no-ct": '403\n\n{"error":{"code":"TokenExpired"}}',
    "power-bi-text": '403\ncontent-type: text/plain\n\n{"error":{"code":"TokenExpired"}}',
    "401": '401\nwww-authenticate: Bearer realm="acme", error="invalid_token"\n\n{"error":"invalid_token"}',
    "403-invalid": '403\nwww-authenticate: Bearer realm="acme", error="invalid_token"\n\n',
    "403-scope": '403\nwww-authenticate: Basic realm="acme", Bearer realm="acme", error="insufficient_scope", scope="files.read files.write"\n\n',
    "403-plain": '403\nwww-authenticate: Bearer realm="acme"\ncontent-type: text/plain\n\nnope',
    "403-big": '403\ncontent-type: application/json\ncontent-length: 100000\n\n{"error":{"code":"TokenExpired"}}',
    "400": '400\nwww-authenticate: Bearer realm="acme", error="invalid_request"\n\nbad request',
    "200": '200\ncontent-type: application/json\n\n{"value":[]}',
}.items():
    write("upstream_classify", name, value)

# token_endpoint: flags, then STATUS, headers, empty line, body.
for name, (flags, value) in {
    "ok": (1, '200\ncontent-type: application/json\n\n' + compact({"access_token": "at-2", "expires_in": 3600, "refresh_token": "rt-2", "token_type": "Bearer"})),
    "ok-minimal": (0, '200\n\n' + compact({"access_token": "at-2"})),
    "ok-string-expiry": (2, '200\n\n' + compact({"access_token": "at-2", "expires_in": "3600", "scope": "files.read", "token_type": "bearer"})),
    "rotated-unusable": (1, '200\n\n' + compact({"access_token": "", "refresh_token": "rt-tbCanary7f3a"})),
    "dpop": (1, '200\n\n' + compact({"access_token": "at-2", "token_type": "DPoP"})),
    "invalid-grant": (1, '400\ncontent-type: application/json\n\n' + compact({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})),
    "invalid-client": (2, '401\nwww-authenticate: Basic realm="idp"\n\n' + compact({"error": "invalid_client"})),
    "401-bare": (1, '401\n\n'),
    "503": (0, '503\nretry-after: 120\n\n<html>down</html>'),
    "429": (0, '429\nretry-after: 99999999999\n\n'),
    "temporarily": (0, '400\n\n' + compact({"error": "temporarily_unavailable"})),
    "too-long": (8, '200\n\n' + compact({"access_token": "at-" + "x" * 100})),
}.items():
    write("token_endpoint", name, bytes([flags]) + value.encode())

# jwks_discovery: flags (bit 0 discovery, bits 1-3 token kind), answers separated by ====.
N, X, Y = jwk_numbers()
JWKS = compact({"keys": [
    {"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig", "n": N, "e": "AQAB"},
    {"kty": "EC", "kid": "es", "crv": "P-256", "x": X, "y": Y},
]})
JWKS_NOKID = compact({"keys": [{"kty": "RSA", "n": N, "e": "AQAB"}]})
JWKS_OCT = compact({"keys": [{"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(HMAC_SECRET)}]})
DISCOVERY = compact({"issuer": ISS, "jwks_uri": ISS + "/jwks", "introspection_endpoint": ISS + "/introspect"})
jwks_seeds = {
    "jwks-rs": (0 << 1, [f"200\ncontent-type: application/json\ncache-control: max-age=300\n\n{JWKS}"]),
    "jwks-es": (1 << 1, [f"200\n\n{JWKS}"]),
    "jwks-nokid": (2 << 1, [f"200\n\n{JWKS_NOKID}"]),
    "jwks-oct-hs": (3 << 1, [f"200\n\n{JWKS_OCT}"]),
    "jwks-confused": (4 << 1, [f"200\n\n{JWKS}"]),
    "jwks-none": (5 << 1, [f"200\n\n{JWKS}"]),
    "jwks-expired": (6 << 1, [f"200\n\n{JWKS}"]),
    "jwks-unknown-kid": (7 << 1, [f"200\n\n{JWKS}"]),
    "jwks-503": (0, ["503\nretry-after: 10\n\n"]),
    "jwks-garbage": (0, ["200\n\n{\"keys\":[{\"kty\":\"RSA\",\"n\":\"!!\",\"e\":\"AQAB\"},{\"kty\":\"EC\",\"crv\":\"P-521\"}]}"]),
    "discovery": (1, [f"200\ncontent-type: application/json\n\n{DISCOVERY}", f"200\n\n{JWKS}"]),
    "discovery-es": (1 | 1 << 1, [f"200\n\n{DISCOVERY}", f"200\n\n{JWKS}"]),
    "discovery-other-issuer": (1, ["200\n\n" + compact({"issuer": "https://evil.example", "jwks_uri": ISS + "/jwks"}), f"200\n\n{JWKS}"]),
    "discovery-404": (1, ["404\n\n", f"200\n\n{JWKS}"]),
    "discovery-relative": (1, ["200\n\n" + compact({"issuer": ISS, "jwks_uri": "/jwks"}), f"200\n\n{JWKS}"]),
}
for name, (flags, answers) in jwks_seeds.items():
    write("jwks_discovery", name, bytes([flags]) + "\n====\n".join(answers).encode())

# introspection: flags (bit 0 discovery, 1 credentials, 2 issuer, 3 audience), answers.
ACTIVE = compact({"active": True, "iss": ISS, "aud": AUD, "sub": "alice", "scope": "read", "exp": FAR, "client_id": "app"})
for name, (flags, answers) in {
    "active": (0x0e, [f"200\ncontent-type: application/json\n\n{ACTIVE}"]),
    "inactive": (0x02, ["200\n\n" + compact({"active": False})]),
    "expired": (0x00, ["200\n\n" + compact({"active": True, "exp": 1600000000})]),
    "not-yet": (0x00, ["200\n\n" + compact({"active": True, "nbf": FAR})]),
    "wrong-issuer": (0x04, ["200\n\n" + compact({"active": True, "iss": "https://evil.example"})]),
    "aud-array": (0x08, ["200\n\n" + compact({"active": True, "aud": ["x", AUD]})]),
    "active-string": (0x00, ["200\n\n" + compact({"active": "true"})]),
    "401": (0x02, ["401\nwww-authenticate: Basic realm=\"idp\"\n\n"]),
    "500": (0x00, ["500\n\noops"]),
    "discovery": (0x03, [f"200\n\n{DISCOVERY}", f"200\n\n{ACTIVE}"]),
    "discovery-none": (0x01, ["200\n\n" + compact({"issuer": ISS, "jwks_uri": ISS + "/jwks"}), f"200\n\n{ACTIVE}"]),
}.items():
    write("introspection", name, bytes([flags]) + "\n====\n".join(answers).encode())

# refresh_stack: flags, script lines.
PBI = '{"error":{"code":"TokenExpired"}}'
for name, (flags, lines) in {
    "happy": (0x01, ["P200||hello|content-type: text/plain"]),
    "401-refresh-retry": (0x01, ['P401|Bearer realm="acme", error="invalid_token"|', "R ok at-1 rt-1", "P200||done"]),
    "401-no-rotation": (0x01, ["P401||", "R ok at-1", "P200||done"]),
    "power-bi": (0x01, [f"P403||{PBI}|content-type: application/json", "R ok at-1 rt-1", "P200||done"]),
    "fresh-rejected": (0x01, ["P401||", "R ok at-1 rt-1", "P401||"]),
    "invalid-grant": (0x01 | 0x20, ["P401||", "R grant"]),
    "no-refresh-token": (0x20, ["P401||"]),
    "endpoint-down": (0x01 | 0x40, ["P401||", "R down"]),
    "misconfigured": (0x01, ["P401||", "R client"]),
    "rotated-unusable": (0x01 | 0x08, ["P401||", "R rotated rt-rot", "P401||", "R ok at-2 rt-3"]),
    "expiring-ahead": (0x01 | 2 << 1 | 0x10, ["R ok at-1 rt-1", "P200||a", "P200||b"]),
    "expired-down": (0x01 | 3 << 1, ["R down", "P200||a"]),
    "scope": (0x01, ['P403|Bearer error="insufficient_scope", scope="files.write"|']),
    "plain-403-forged": (0x01, ['P403|Bearer realm="acme"|nope|proxy-status: gw; error=http_request_denied|link: <https://gw.example/connect/acme>; rel="https://docs.rs/tower-bearer/latest/tower_bearer/upstream/#connect"']),
    "hop-by-hop": (0x01, ["P200||x|connection: x-private|x-private: secret|proxy-status: gw; received-status=200"]),
    "unreachable": (0x01 | 0x18, ["E", "P401||", "R unreach", "R timeout", "R parse"]),
    "three-requests": (0x01 | 0x10, ["P401||", "R ok at-1 rt-1", "P401||", "P401||", "R ok at-2 rt-2", "P200||ok"]),
}.items():
    write("refresh_stack", name, bytes([flags]) + "\n".join(lines).encode())

print("seeds written")
