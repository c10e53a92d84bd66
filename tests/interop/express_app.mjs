// An Express application that signs its users in, and steps them up before a transfer, with
// Auth0's express-openid-connect against the idenfy-stepup provider.
//
// docs/gateways/express-openid-connect.md prints the parts between the `guide:` markers
// verbatim; tests/e2e/test_express_gateway.py drives this file with Chromium and checks that
// the guide still shows them.
//
// Environment: PORT, ISSUER_BASE_URL, BASE_URL, CLIENT_ID, CLIENT_SECRET, SESSION_SECRET and,
// optionally, PUSHED_AUTHORIZATION_REQUESTS=true.
import { isDeepStrictEqual } from 'node:util';

import express from 'express';
import eoc from 'express-openid-connect';

const { auth, requiresAuth } = eoc;
const env = process.env;

// guide:config start
const STEPUP_ACR = 'urn:idenfy:stepup:face';
// How far the provider's clock (auth_time) may be behind ours (the step-up's start).
const CLOCK_TOLERANCE = 30;

const app = express();
app.use(
  auth({
    issuerBaseURL: env.ISSUER_BASE_URL, // https://stepup.example.com
    baseURL: env.BASE_URL, // https://app.example.com
    clientID: env.CLIENT_ID,
    clientSecret: env.CLIENT_SECRET,
    clientAuthMethod: 'client_secret_basic',
    secret: env.SESSION_SECRET, // encrypts the session cookie
    idTokenSigningAlg: 'RS256',
    clockTolerance: CLOCK_TOLERANCE,
    authRequired: false, // public pages stay public; requiresAuth() guards the others
    attemptSilentLogin: false, // prompt=none cannot pass a face check
    enableTelemetry: false,
    // 'true': every authorization request, details included, is pushed to /par (RFC 9126)
    // with the client's credentials; the browser carries only a request_uri.
    pushedAuthorizationRequests: env.PUSHED_AUTHORIZATION_REQUESTS === 'true',
    authorizationParams: {
      response_type: 'code', // with PKCE (S256), which the library adds for code
      response_mode: 'query',
      scope: 'openid',
      acr_values: STEPUP_ACR,
    },
    // Our own /login names the user; the library keeps /callback and /logout.
    routes: { login: false, callback: '/callback', logout: '/logout' },
    // The login state is kept in the library's signed transaction cookie (and sent as
    // `state`): afterCallback gets it back as this login's, not as the browser says.
    getLoginState: (req, options) => ({
      returnTo: options.returnTo,
      loginHint: options.authorizationParams.login_hint,
    }),
    afterCallback: (req, res, session, state) => {
      // A login_hint is only a claim the provider believes: the face check must be its user's.
      if (state.loginHint !== undefined && req.oidc.idTokenClaims.sub !== state.loginHint) {
        throw httpError(403, 'The face check was passed by someone else.');
      }
      return session;
    },
  }),
);
// guide:config end

// Every transfer executed, with the txn of the face check that approved it.
const executed = [];
const usedTxns = new Set();

app.get('/', (req, res) => {
  const user = req.oidc.isAuthenticated() ? req.oidc.user.sub : null;
  const mine = executed.filter((t) => t.sub === user);
  res.send(
    page(
      'Bank',
      user === null
        ? `<p>Not signed in.</p>
<form method="get" action="/login"><label>User <input name="user" required></label>
<button type="submit">Sign in</button></form>`
        : `<p>Signed in as <b data-user>${esc(user)}</b>.</p>
<form method="post" action="/transfer">
<input type="hidden" name="amount" value="250.00"><input type="hidden" name="currency" value="EUR">
<input type="hidden" name="creditorName" value="ACME Ltd">
<input type="hidden" name="iban" value="DE89370400440532013000">
<button type="submit" data-transfer>Transfer 250.00 EUR to ACME Ltd</button></form>
<h2>Transfers</h2><ul id="transfers">${mine
            .map((t) => `<li data-txn="${esc(t.txn)}">${esc(describe(t.detail))}</li>`)
            .join('')}</ul>`,
    ),
  );
});

// Sign-in: the user names themself; the face check proves it (afterCallback compares sub).
app.get('/login', (req, res) => {
  const user = typeof req.query.user === 'string' ? req.query.user.trim() : '';
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(user)) {
    res.status(400).send(page('Sign in', '<p data-error>Enter a user name.</p>'));
    return;
  }
  res.oidc.login({ returnTo: '/', authorizationParams: { login_hint: user } });
});

// guide:stepup start
// The action: its details go to the provider, which shows them above the face check.
app.post('/transfer', requiresAuth(), express.urlencoded({ extended: false }), (req, res) => {
  const detail = paymentDetail(req.body);
  if (detail === null) {
    res.status(400).send(page('Transfer', '<p data-error>Not a valid transfer.</p>'));
    return;
  }
  // Kept in the encrypted session cookie until the step-up comes back.
  req.appSession.pendingTransfer = {
    sub: req.oidc.user.sub,
    detail,
    requestedAt: Math.floor(Date.now() / 1000),
  };
  res.oidc.login({
    returnTo: '/transfer/complete',
    authorizationParams: {
      acr_values: STEPUP_ACR,
      id_token_hint: req.oidc.idToken, // the session's user, verified by the provider
      authorization_details: JSON.stringify([detail]),
      max_age: 0, // a new face check, never an earlier one
    },
  });
});

// After the step-up: execute the pending transfer only if this id_token approved it.
app.get('/transfer/complete', requiresAuth(), (req, res) => {
  const pending = req.appSession.pendingTransfer;
  delete req.appSession.pendingTransfer; // one attempt per step-up
  const claims = req.oidc.idTokenClaims;
  const problem = pending ? stepUpProblem(claims, pending) : 'No transfer awaits a face check.';
  if (problem !== null) {
    res.status(403).send(page('Transfer refused', `<p data-refused>${esc(problem)}</p>`));
    return;
  }
  usedTxns.add(claims.txn);
  executed.push({ sub: claims.sub, txn: claims.txn, detail: pending.detail });
  res.send(page('Transfer executed', executedBody(claims, pending.detail)));
});

// What the id_token must say before the transfer runs (docs/transactions.md).
function stepUpProblem(claims, pending) {
  if (claims.sub !== pending.sub) return 'The face check was passed by someone else.';
  if (claims.acr !== STEPUP_ACR) return 'The face check did not reach the required level.';
  if (!Array.isArray(claims.amr) || !claims.amr.includes('face')) return 'No face check.';
  if (!isDeepStrictEqual(claims.authorization_details, [pending.detail])) {
    return 'The face check approved something other than this transfer.';
  }
  if (typeof claims.txn !== 'string' || claims.txn === '' || usedTxns.has(claims.txn)) {
    return 'The face check has no transaction id of its own.';
  }
  const authTime = claims.auth_time;
  if (typeof authTime !== 'number' || authTime < pending.requestedAt - CLOCK_TOLERANCE) {
    return 'The face check is older than this transfer.';
  }
  return null;
}
// guide:stepup end

// The library's errors (an OAuth error from the provider, a failed check of the callback,
// afterCallback's refusal) end here; a pending transfer is dropped with them.
// guide:errors start
app.use((err, req, res, next) => {
  if (req.appSession) delete req.appSession.pendingTransfer;
  const known = Number.isInteger(err.status) && err.status >= 400 && err.status < 500;
  if (!known) console.error(err); // the operator's log; the page says nothing internal
  // The provider's own error response: the library raises it only after checking its state
  // and iss (RFC 9207), so its stepup_error may be shown beside it.
  const fromProvider = req.path === '/callback' && known && err.error === req.query.error;
  const shown = req.query.stepup_error;
  const stepupError = fromProvider && typeof shown === 'string' ? shown : '';
  const error = known ? err.error || 'invalid_request' : 'server_error';
  const description = known ? err.error_description || err.message : 'Please try again later.';
  res.status(known ? err.status : 500).send(
    page(
      'Sign-in failed',
      `<p>Error <code data-error>${esc(error)}</code>
<code data-stepup-error>${esc(stepupError)}</code></p>
<p data-error-description>${esc(description)}</p>
<p><a href="/">Back</a></p>`,
    ),
  );
});
// guide:errors end

function paymentDetail(body) {
  const { amount, currency, creditorName, iban } = body ?? {};
  const ok =
    typeof amount === 'string' &&
    /^[0-9]{1,12}(\.[0-9]{1,2})?$/.test(amount) &&
    typeof currency === 'string' &&
    /^[A-Z]{3}$/.test(currency) &&
    typeof creditorName === 'string' &&
    creditorName.length >= 1 &&
    creditorName.length <= 140 &&
    typeof iban === 'string' &&
    /^[A-Z]{2}[0-9]{2}[A-Za-z0-9]{11,30}$/.test(iban);
  if (!ok) return null;
  return {
    type: 'payment_initiation',
    instructedAmount: { amount, currency },
    creditorName,
    creditorAccount: { iban },
  };
}

function executedBody(claims, detail) {
  const shown = {
    sub: claims.sub,
    acr: claims.acr,
    amr: claims.amr.join(' '),
    auth_time: String(claims.auth_time),
    txn: claims.txn,
    iss: claims.iss,
  };
  const rows = Object.entries(shown)
    .map(([name, value]) => `<dt>${name}</dt><dd data-claim="${name}">${esc(value)}</dd>`)
    .join('\n');
  return `<main data-executed>
<p>Executed: ${esc(describe(detail))}</p>
<dl>${rows}</dl>
<pre data-authorization-details>${esc(JSON.stringify(claims.authorization_details))}</pre>
<p><a href="/">Back</a></p></main>`;
}

function describe(detail) {
  const { amount, currency } = detail.instructedAmount;
  return `${amount} ${currency} to ${detail.creditorName}`;
}

function httpError(status, message) {
  const fields = { status, error: 'access_denied', error_description: message };
  return Object.assign(new Error(message), fields);
}

function esc(value) {
  return String(value).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );
}

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<link rel="icon" href="data:,"></head>
<body><h1>${esc(title)}</h1>
${body}
</body></html>
`;
}

const server = app.listen(Number(env.PORT), '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
