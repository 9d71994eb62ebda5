// A second oidc-provider (panva's, the same pinned package as interop/server.mjs), over https on
// 127.0.0.1, for the mutual TLS tests (tests/mtls.rs, RFC 8705). `scripts/test` starts it; by
// hand:
//
//   npm ci --prefix interop
//   node interop/mtls-server.mjs --gen-certs /tmp/certs      # needs the openssl command
//   INTEROP_MTLS_CERT_DIR=/tmp/certs node interop/mtls-server.mjs
//
// It listens twice, as RFC 8705 §5 lays a deployment out:
//   - the issuer, https://127.0.0.1:PORT, which never asks for a client certificate;
//   - the mutual TLS aliases, https://127.0.0.1:PORT2, which asks for one (and accepts any: the
//     provider decides, per client, whether it is good), named by `mtls_endpoint_aliases` in the
//     metadata. Only `token_endpoint` is aliased.
//
// Environment:
//   MTLS_PORT               the issuer's port (default 9443; 0 picks a free one); the alias
//                           listener always takes a free port
//   INTEROP_MTLS_CERT_DIR   the folder `--gen-certs DIR` wrote (see `generateCertificates`)
//   DEBUG=oidc-provider:*   the provider's own logs (oidc-provider:error says why a client failed)
//
// Prints exactly one line on stdout when both listeners accept connections:
//   listening on https://127.0.0.1:PORT

import { execFileSync } from 'node:child_process';
import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';

import Provider from 'oidc-provider';

import { resourceIndicators } from './resources.mjs';

// The subject of the `tls_client_auth` client's certificate, in the order of the certificate
// (openssl's `-subj`), and as RFC 4514 writes it (last RDN first), which is how the client is
// registered (RFC 8705 §2.1.2). Keep in step with tests/mtls.rs.
const CLIENT_SUBJECT = '/O=client-credentials interop/CN=mtls-pki-client';
const CLIENT_SUBJECT_DN = 'CN=mtls-pki-client,O=client-credentials interop';

// `--gen-certs DIR`: writes fresh certificates by the openssl command and exits:
//   ca.pem                          the test CA (the tests trust it for the server; the server
//                                   trusts it for `tls_client_auth` clients)
//   server.pem, server-key.pem      the server's, for IP 127.0.0.1, issued by the CA
//   client.pem, client-key.pem      the `tls_client_auth` client's, issued by the CA
//   self-signed.pem, self-signed-key.pem
//                                   the `self_signed_tls_client_auth` client's, self-signed
//   stranger.pem, stranger-key.pem  self-signed and registered nowhere
// All keys are P-256, in PKCS#8; certificates are good for two days.
if (process.argv[2] === '--gen-certs') {
  const dir = process.argv[3];
  if (!dir) {
    console.error('usage: node interop/mtls-server.mjs --gen-certs DIR');
    process.exit(2);
  }
  try {
    generateCertificates(dir);
  } catch (error) {
    const hint = error.code === 'ENOENT' ? ': the openssl command is not installed (apt-get install openssl)' : '';
    console.error(`cannot generate the mutual TLS test certificates${hint}: ${error.message}`);
    process.exit(1);
  }
  process.exit(0);
}

function generateCertificates(dir) {
  mkdirSync(dir, { recursive: true });
  const path = (name) => join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const newKey = (name) => {
    // Through node, so the key is PKCS#8 whatever the openssl version writes by default.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(path(name), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  };
  // Positive and 128 bits (RFC 5280 §4.1.2.2 wants positive; webpki refuses a negative one).
  const serial = () => `0x${randomBytes(16).toString('hex').replace(/^./, '1')}`;
  const selfSigned = (name, subject, extensions) => {
    newKey(`${name}-key.pem`);
    writeFileSync(path(`${name}.ext`), extensions);
    openssl('req', '-new', '-key', path(`${name}-key.pem`), '-subj', subject, '-out', path(`${name}.csr`));
    openssl('x509', '-req', '-in', path(`${name}.csr`), '-key', path(`${name}-key.pem`), '-days', '2',
      '-set_serial', serial(), '-extfile', path(`${name}.ext`), '-out', path(`${name}.pem`));
  };
  const issued = (name, subject, extensions) => {
    newKey(`${name}-key.pem`);
    writeFileSync(path(`${name}.ext`), extensions);
    openssl('req', '-new', '-key', path(`${name}-key.pem`), '-subj', subject, '-out', path(`${name}.csr`));
    openssl('x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.pem'), '-CAkey', path('ca-key.pem'),
      '-days', '2', '-set_serial', serial(), '-extfile', path(`${name}.ext`), '-out', path(`${name}.pem`));
  };
  const leaf = (usage) => `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\n`;
  selfSigned('ca', '/CN=client-credentials interop CA',
    'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
  issued('server', '/CN=127.0.0.1', `${leaf('serverAuth')}subjectAltName=IP:127.0.0.1\n`);
  issued('client', CLIENT_SUBJECT, leaf('clientAuth'));
  selfSigned('self-signed', '/CN=mtls-self-signed-client', leaf('clientAuth'));
  selfSigned('stranger', '/CN=mtls-stranger', leaf('clientAuth'));
  for (const name of ['ca', 'server', 'client', 'self-signed', 'stranger']) {
    rmSync(path(`${name}.csr`));
    rmSync(path(`${name}.ext`));
  }
}

const port = Number.parseInt(process.env.MTLS_PORT ?? '9443', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`MTLS_PORT must be a port number, got ${process.env.MTLS_PORT}`);
  process.exit(2);
}
const certDir = process.env.INTEROP_MTLS_CERT_DIR;
if (!certDir) {
  console.error('INTEROP_MTLS_CERT_DIR is not set: run `node interop/mtls-server.mjs --gen-certs DIR` and point it at DIR');
  process.exit(2);
}
const read = (name) => readFileSync(join(certDir, name), 'utf8');
const ca = read('ca.pem');
const tls = { key: read('server-key.pem'), cert: read('server.pem') };

// The self-signed client registers its certificate as a JWK with `x5c` (RFC 8705 §2.2): the
// provider matches the thumbprint of the certificate the client presents against it.
const selfSigned = new X509Certificate(read('self-signed.pem'));
const selfSignedJwk = { ...selfSigned.publicKey.export({ format: 'jwk' }), x5c: [selfSigned.raw.toString('base64')] };

// The provider's own signing key (for JWT access tokens), fresh on every start.
const signingKey = {
  ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }),
  kid: 'interop-mtls-provider',
  use: 'sig',
  alg: 'ES256',
};

// Keep in step with tests/mtls.rs.
const clientCredentialsOnly = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'api:read' };
const clients = [
  {
    // RFC 8705 §2.1: a certificate from the CA with this subject.
    ...clientCredentialsOnly,
    client_id: 'mtls-pki-client',
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: CLIENT_SUBJECT_DN,
    tls_client_certificate_bound_access_tokens: true,
  },
  {
    // RFC 8705 §2.2: exactly this certificate, whoever issued it.
    ...clientCredentialsOnly,
    client_id: 'mtls-self-signed-client',
    token_endpoint_auth_method: 'self_signed_tls_client_auth',
    jwks: { keys: [selfSignedJwk] },
    tls_client_certificate_bound_access_tokens: true,
  },
  {
    // RFC 8705 §3 on its own: a secret authenticates, the certificate only binds the token.
    ...clientCredentialsOnly,
    client_id: 'mtls-bound-secret-client',
    client_secret: 'mtls-bound-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    tls_client_certificate_bound_access_tokens: true,
  },
];

// A resource whose tokens are JWTs, so the tests can read `cnf` (RFC 8705 §3.1).
const resources = {
  'https://mtls.api.example/': {
    scope: 'api:read',
    audience: 'https://mtls.api.example/',
    accessTokenFormat: 'jwt',
    accessTokenTTL: 600,
    jwt: { sign: { alg: 'ES256' } },
  },
};

// The PEM of the certificate the client presented on this connection, if it presented one.
function peerCertificate(ctx) {
  const socket = ctx.req.socket;
  if (typeof socket.getPeerCertificate !== 'function') {
    return undefined;
  }
  const peer = socket.getPeerCertificate();
  return peer?.raw ? new X509Certificate(peer.raw).toString() : undefined;
}

// RFC 4514: the RDNs last first, joined by commas. Node lists them in certificate order, one
// per line; the test subjects have no character that would need escaping.
function subjectDn(pem) {
  return new X509Certificate(pem).subject.split('\n').reverse().join(',');
}

const issuerServer = createServer({ ...tls });
const mtlsServer = createServer({ ...tls, ca, requestCert: true, rejectUnauthorized: false });

function listen(server, listenPort) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => resolve(server.address().port));
  });
}

let issuerPort;
let mtlsPort;
try {
  issuerPort = await listen(issuerServer, port);
  mtlsPort = await listen(mtlsServer, 0);
} catch (error) {
  console.error(`cannot listen on 127.0.0.1: ${error.message}`);
  process.exit(1);
}

const issuer = `https://127.0.0.1:${issuerPort}`;
const provider = new Provider(issuer, {
  clients,
  // Enabling the mTLS features below is not enough: the methods must be listed here too, or a
  // client registered with one is `invalid_client_metadata` and every request fails.
  clientAuthMethods: ['client_secret_basic', 'tls_client_auth', 'self_signed_tls_client_auth'],
  jwks: { keys: [signingKey] },
  scopes: ['api:read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    mTLS: {
      enabled: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      certificateBoundAccessTokens: true,
      getCertificate: peerCertificate,
      // Verified against `ca` by node's TLS: the socket says whether the chain was good.
      certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => {
        if (property !== 'tls_client_auth_subject_dn') {
          return false;
        }
        const pem = peerCertificate(ctx);
        return pem !== undefined && subjectDn(pem) === expected;
      },
    },
    resourceIndicators: resourceIndicators(resources),
  },
  // RFC 8705 §5: the endpoints a mutual TLS client uses instead, published with the others.
  discovery: { mtls_endpoint_aliases: { token_endpoint: `https://127.0.0.1:${mtlsPort}/token` } },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
});
const callback = provider.callback();
issuerServer.on('request', callback);
mtlsServer.on('request', callback);
console.log(`listening on ${issuer}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
