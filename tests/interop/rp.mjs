// A relying party built on openid-client v6 (an OpenID Certified RP library), driven by
// tests/interop/test_openid_client.py. The test plays the browser; this script only does what
// an RP does on each side of the front channel, and lets the library make every check.
//
// The client comes from the environment: RP_ISSUER, RP_CLIENT_ID, RP_CLIENT_SECRET,
// RP_REDIRECT_URI, RP_ACR_VALUES, RP_LOGIN_HINT, and optionally RP_AUTHORIZATION_DETAILS (an
// RFC 9396 JSON array, sent as the authorization_details parameter). One JSON object is
// printed on stdout.
//
//   node rp.mjs start
//     discovery, then an authorization URL with PKCE S256, state, nonce, acr_values and
//     login_hint → {"url", "state", "nonce", "verifier", "iss_parameter_supported"}
//   node rp.mjs start-par
//     the same request pushed with buildAuthorizationUrlWithPAR (client_secret_basic at /par);
//     the URL then carries only client_id and request_uri
//   node rp.mjs callback <callback URL> <verifier> <state> <nonce>
//     authorizationCodeGrant validates the callback (RFC 9207 iss, state, error), redeems the
//     code (client_secret_basic, PKCE), verifies the id_token (signature against the JWKS, iss,
//     aud, exp, nonce), then reads userinfo (sub must match) → {"claims", "userinfo",
//     "authorization_details"} (the last as the library read it from the token response)
//     On any failure: {"name", "code", "message", "cause", "error", "error_description",
//     "stepup_error"} and exit status 1.
import * as client from 'openid-client'

const env = (name) => {
  const value = process.env[name]
  if (!value) throw new TypeError(`${name} is not set`)
  return value
}

async function configuration () {
  return client.discovery(
    new URL(env('RP_ISSUER')),
    env('RP_CLIENT_ID'),
    { redirect_uris: [env('RP_REDIRECT_URI')], id_token_signed_response_alg: 'RS256' },
    client.ClientSecretBasic(env('RP_CLIENT_SECRET')),
    {
      // The test issuer is http://127.0.0.1:<port>; the library refuses plain HTTP otherwise.
      // enableNonRepudiationChecks: verify the id_token's signature with the issuer's JWKS
      // (without it the library trusts an id_token received over the token endpoint's TLS).
      execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
      timeout: 10
    }
  )
}

async function start (pushed) {
  const config = await configuration()
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const parameters = {
    redirect_uri: env('RP_REDIRECT_URI'),
    scope: 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    acr_values: env('RP_ACR_VALUES'),
    login_hint: env('RP_LOGIN_HINT')
  }
  if (process.env.RP_AUTHORIZATION_DETAILS) {
    parameters.authorization_details = process.env.RP_AUTHORIZATION_DETAILS
  }
  // PAR (RFC 9126): the library pushes the parameters to the advertised endpoint, with its
  // client authentication, and builds the URL from client_id and the returned request_uri.
  const url = pushed
    ? await client.buildAuthorizationUrlWithPAR(config, parameters)
    : client.buildAuthorizationUrl(config, parameters)
  const metadata = config.serverMetadata()
  return {
    url: url.href,
    state,
    nonce,
    verifier,
    iss_parameter_supported: metadata.authorization_response_iss_parameter_supported ?? null,
    supports_pkce: metadata.supportsPKCE(),
    par_endpoint: metadata.pushed_authorization_request_endpoint ?? null,
    authorization_details_types_supported: metadata.authorization_details_types_supported ?? null
  }
}

async function callback (callbackUrl, verifier, state, nonce) {
  const config = await configuration()
  const tokens = await client.authorizationCodeGrant(config, new URL(callbackUrl), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true
  })
  const claims = tokens.claims()
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
  return {
    claims,
    userinfo,
    token_type: tokens.token_type,
    authorization_details: tokens.authorization_details ?? null
  }
}

function describe (err) {
  // AuthorizationResponseError keeps the callback's parameters as its cause (URLSearchParams).
  const params = err?.cause instanceof URLSearchParams ? err.cause : null
  const cause = err?.cause instanceof Error ? `${err.cause.name}: ${err.cause.message}` : null
  return {
    name: err?.name ?? 'Error',
    code: err?.code ?? null,
    message: String(err?.message ?? err),
    cause,
    error: err?.error ?? null,
    error_description: err?.error_description ?? null,
    stepup_error: params?.get('stepup_error') ?? null
  }
}

const [command, ...args] = process.argv.slice(2)
try {
  let result
  if (command === 'start' && args.length === 0) {
    result = await start(false)
  } else if (command === 'start-par' && args.length === 0) {
    result = await start(true)
  } else if (command === 'callback' && args.length === 4) {
    result = await callback(...args)
  } else {
    throw new TypeError('usage: rp.mjs start | start-par | callback URL VERIFIER STATE NONCE')
  }
  process.stdout.write(JSON.stringify(result) + '\n')
} catch (err) {
  process.stdout.write(JSON.stringify(describe(err)) + '\n')
  process.exitCode = 1
}
