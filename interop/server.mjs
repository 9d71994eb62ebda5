// A real, OpenID Certified authorization server (panva's oidc-provider) on 127.0.0.1, for the
// crate's interop tests (tests/interop.rs). `scripts/test` starts it; to run it by hand:
//
//   npm ci --prefix interop
//   INTEROP_CLIENT_KEY_DIR=/tmp/keys node interop/server.mjs   # after `node interop/server.mjs --gen-key /tmp/keys`
//
// Environment:
//   OIDC_PORT               port to listen on (default 9400; 0 picks a free one)
//   INTEROP_CLIENT_KEY_DIR  folder holding `client-jwks.json`, the public JWKS of the
//                           private_key_jwt client (written by `--gen-key DIR`, with the
//                           private key `client-key.der` the tests sign with)
//   DEBUG=oidc-provider:*   the provider's own logs (oidc-provider:error says why a client failed)
//
// Prints exactly one line on stdout when it accepts connections:
//   listening on http://127.0.0.1:PORT
//
// Besides the provider's own routes, for the tests only:
//   GET /interop/dpop-log/JKT  every token request whose DPoP proof was signed by the key with
//                              this RFC 7638 thumbprint, in order: [{"nonce": bool, "status": n}]

import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

import Provider from 'oidc-provider';

import { resourceIndicators } from './resources.mjs';

// `--gen-key DIR`: writes a fresh P-256 key pair for the private_key_jwt client and exits.
if (process.argv[2] === '--gen-key') {
  const dir = process.argv[3];
  if (!dir) {
    console.error('usage: node interop/server.mjs --gen-key DIR');
    process.exit(2);
  }
  mkdirSync(dir, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(join(dir, 'client-key.der'), privateKey.export({ type: 'pkcs8', format: 'der' }), { mode: 0o600 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'interop-client', use: 'sig', alg: 'ES256' };
  writeFileSync(join(dir, 'client-jwks.json'), `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`);
  process.exit(0);
}

const port = Number.parseInt(process.env.OIDC_PORT ?? '9400', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`OIDC_PORT must be a port number, got ${process.env.OIDC_PORT}`);
  process.exit(2);
}
const keyDir = process.env.INTEROP_CLIENT_KEY_DIR;
if (!keyDir) {
  console.error('INTEROP_CLIENT_KEY_DIR is not set: run `node interop/server.mjs --gen-key DIR` and point it at DIR');
  process.exit(2);
}
const clientJwks = JSON.parse(readFileSync(join(keyDir, 'client-jwks.json'), 'utf8'));

// The provider's own signing key (for JWT access tokens), fresh on every start.
const signingKey = {
  ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }),
  kid: 'interop-provider',
  use: 'sig',
  alg: 'ES256',
};

// Every character RFC 6749 §2.3.1's encoding must survive; oidc-provider needs ASCII (VSCHAR).
const SPECIAL = ': +%&=/?~!';

// client_secret_jwt keys HS256 with the secret, which RFC 7518 §3.2 wants of 32 bytes or more.
const SECRET_JWT_SECRET = 'secret-jwt-client-secret-of-at-least-32-bytes';

// Keep in step with tests/interop.rs.
const clientCredentialsOnly = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };
const clients = [
  {
    ...clientCredentialsOnly,
    client_id: 'basic-client',
    client_secret: 'basic-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'api:read api:write',
  },
  {
    ...clientCredentialsOnly,
    client_id: 'post-client',
    client_secret: 'post-secret',
    token_endpoint_auth_method: 'client_secret_post',
    scope: 'api:read',
  },
  {
    ...clientCredentialsOnly,
    client_id: `basic${SPECIAL}id`,
    client_secret: `basic${SPECIAL}secret`,
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'api:read',
  },
  {
    ...clientCredentialsOnly,
    client_id: `post${SPECIAL}id`,
    client_secret: `post${SPECIAL}secret`,
    token_endpoint_auth_method: 'client_secret_post',
    scope: 'api:read',
  },
  {
    // Registered for the authorization code grant only: not allowed client_credentials.
    client_id: 'code-only-client',
    client_secret: 'code-only-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    scope: 'api:read',
  },
  {
    ...clientCredentialsOnly,
    client_id: 'jwt-client',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks: clientJwks,
    scope: 'api:read',
  },
  {
    ...clientCredentialsOnly,
    client_id: 'secret-jwt-client',
    client_secret: SECRET_JWT_SECRET,
    token_endpoint_auth_method: 'client_secret_jwt',
    token_endpoint_auth_signing_alg: 'HS256',
    scope: 'api:read',
  },
  {
    // Its tokens must be DPoP-bound (RFC 9449 §5.2): a request without a proof is refused.
    ...clientCredentialsOnly,
    client_id: 'dpop-client',
    client_secret: 'dpop-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    dpop_bound_access_tokens: true,
    scope: 'api:read',
  },
];

// RFC 8707 resources, an allow-list: anything else is `invalid_target`.
const resources = {
  'https://jwt.api.example/': {
    scope: 'api:read api:write',
    audience: 'https://jwt.api.example/',
    accessTokenFormat: 'jwt',
    accessTokenTTL: 600,
    jwt: { sign: { alg: 'ES256' } },
  },
  'urn:example:opaque-api': {
    scope: 'api:read',
    accessTokenFormat: 'opaque',
    accessTokenTTL: 300,
  },
};

// The DPoP proofs of token requests, by the thumbprint of their key: what the tests count the
// attempts of an exchange by. Bounded: the oldest key is forgotten past MAX_DPOP_KEYS.
const MAX_DPOP_KEYS = 1000;
const dpopLog = new Map();

function base64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// RFC 7638 §3.2: the required members only, in lexicographic order.
function thumbprint(jwk) {
  const members = { EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'], RSA: ['e', 'kty', 'n'] }[jwk?.kty];
  if (!members) {
    return undefined;
  }
  const json = JSON.stringify(Object.fromEntries(members.map((name) => [name, jwk[name]])));
  return createHash('sha256').update(json).digest('base64url');
}

// Records a token request's DPoP proof, and the status the provider answered it with.
function logDpopProof(proof, status) {
  let jkt;
  let nonce;
  try {
    const [header, payload] = proof.split('.');
    jkt = thumbprint(base64urlJson(header).jwk);
    nonce = typeof base64urlJson(payload).nonce === 'string';
  } catch {
    return; // not a JWT: there is no key to file it under
  }
  if (!jkt) {
    return;
  }
  if (!dpopLog.has(jkt) && dpopLog.size >= MAX_DPOP_KEYS) {
    dpopLog.delete(dpopLog.keys().next().value);
  }
  dpopLog.set(jkt, [...(dpopLog.get(jkt) ?? []), { nonce, status }]);
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    scopes: ['openid', 'offline_access', 'api:read', 'api:write', 'api:admin'],
    // A resource's own lifetime wins; 3600 s without one.
    ttl: { ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 3600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // Every DPoP proof must carry a server nonce (RFC 9449 §8): a proof without one gets
      // `use_dpop_nonce`, which exercises the client's retry.
      dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
      resourceIndicators: resourceIndicators(resources),
    },
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
  });
  // Logged once the provider has answered, before the answer is sent: a client that has the
  // answer finds it in the log.
  provider.use(async (ctx, next) => {
    await next();
    const proof = ctx.get('DPoP');
    if (ctx.method === 'POST' && ctx.path === '/token' && proof) {
      logDpopProof(proof, ctx.status);
    }
  });
  const callback = provider.callback();
  const logPath = '/interop/dpop-log/';
  server.on('request', (req, res) => {
    if (req.method === 'GET' && req.url.startsWith(logPath)) {
      const entries = dpopLog.get(decodeURIComponent(req.url.slice(logPath.length))) ?? [];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(entries));
      return;
    }
    callback(req, res);
  });
  console.log(`listening on ${issuer}`);
});
server.on('error', (error) => {
  console.error(`cannot listen on 127.0.0.1:${port}: ${error.message}`);
  process.exit(1);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
