// A real OpenID provider for nrls's sign-in tests: panva's oidc-provider (a
// certified OP), configured per identity provider from a JSON file, instead
// of a hand-written token minter. The RP under test talks to it exactly as it
// would to NHS CIS2 Authentication or NHS login: discovery, JWKS, the
// authorization-code flow with PKCE, private_key_jwt at the token endpoint,
// userinfo and RP-initiated logout.
//
//   node testing/oidc/provider.mjs <config.json> [port]
//
// Prints `LISTENING <url>` then `READY <issuer-url>` once it accepts
// connections, and exits when its stdin closes, so a test process that dies
// never leaves it running. Configuration (JSON), every key but `clients` and
// `accounts` optional:
//   issuer              default http://127.0.0.1:<port>; set it when the OP
//                       sits behind a proxy (the proxy's URL)
//   port                default 0 (the CLI argument wins)
//   profile             "cis2" (default) or "nhslogin": which scopes and
//                       claims the OP knows (see PROFILES below)
//   keys                private signing JWKs (RSA); default: one generated
//   idTokenAlg          default id_token_signed_response_alg for clients
//                       without one (default RS256; NHS login uses RS512)
//   clients[]           { client_id, jwks: {keys: [public JWKs]},
//                         redirect_uris, post_logout_redirect_uris?,
//                         id_token_signed_response_alg? }  -- always
//                       token_endpoint_auth_method private_key_jwt
//   accounts            { "<account id>": { ...claims } }; the account id is
//                       what the dev login form takes as "login" and is the
//                       `sub` unless the claims carry one
//   clockOffsetSeconds  shifts the OP's clock when it issues ID tokens, so a
//                       negative value yields genuinely expired ID tokens
//   conformIdTokenClaims default false: scope-granted claims go in the ID
//                       token too (NHS login puts nhs_number, vot and
//                       identity_proofing_level there)
//   ttl                 oidc-provider ttl overrides (seconds)
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

// Scope -> claims, as each identity provider documents them.
const PROFILES = {
  // NHS CIS2 Authentication (NHS Identity): roles arrive as
  // nhsid_nrbac_roles [{ person_orgid, person_roleid, org_code, role_name,
  // role_code "Sxxxx:Gxxxx:Rxxxx", activities, activity_codes, aow,
  // aow_codes, workgroups, workgroups_codes }].
  cis2: {
    openid: ['sub'],
    profile: ['name', 'family_name', 'given_name', 'uid'],
    email: ['email'],
    nhsperson: ['nhsid_useruid', 'title', 'idassurancelevel', 'initials', 'middle_names', 'display_name'],
    nationalrbacaccess: ['nhsid_nrbac_roles'],
    associatedorgs: ['nhsid_user_orgs'],
    selectedrole: ['selected_roleid'],
  },
  // NHS login: the vector of trust achieved (vot, e.g. "P9.Cp.Cd"), the
  // proofing level (P0, P5, P9) and the NHS number for P9 users.
  nhslogin: {
    openid: ['sub', 'vot', 'vtm', 'identity_proofing_level', 'id_status'],
    profile: ['nhs_number', 'birthdate', 'family_name', 'given_name', 'identity_proofing_level'],
    basic_demographics: ['birthdate', 'family_name', 'given_name'],
    email: ['email', 'email_verified'],
    phone: ['phone_number', 'phone_number_verified'],
    profile_extended: ['nhs_number', 'gp_registration_details'],
    gp_integration_credentials: ['gp_integration_credentials'],
  },
};

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node provider.mjs <config.json> [port]');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const port = Number(process.argv[3] ?? config.port ?? 0);
const profileName = config.profile ?? 'cis2';
const scopes = PROFILES[profileName];
if (!scopes) {
  console.error(`unknown profile ${profileName}: one of ${Object.keys(PROFILES).join(', ')}`);
  process.exit(2);
}

const keys = config.keys ?? [
  { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'op-1', use: 'sig' },
];
const defaultAlg = config.idTokenAlg ?? 'RS256';
const clients = (config.clients ?? []).map((c) => ({
  token_endpoint_auth_method: 'private_key_jwt',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  id_token_signed_response_alg: defaultAlg,
  ...c,
}));
const accounts = config.accounts ?? {};

function claimsOf(id) {
  const claims = { sub: id, ...accounts[id] };
  // NHS login always states the vector of trust achieved.
  if (profileName === 'nhslogin' && claims.identity_proofing_level && !claims.vot) {
    claims.vot = `${claims.identity_proofing_level}.Cp.Cd`;
  }
  return claims;
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const listening = `http://127.0.0.1:${server.address().port}`;
  const issuer = config.issuer ?? listening;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys },
    findAccount: async (_ctx, id) => (accounts[id] === undefined ? undefined : {
      accountId: id,
      claims: async () => claimsOf(id),
    }),
    claims: scopes,
    scopes: Object.keys(scopes),
    conformIdTokenClaims: config.conformIdTokenClaims ?? false,
    // NHS login's requested vectors of trust and the NHS App's single sign-on
    // hint are accepted as request parameters (NHS login takes them as such).
    extraParams: ['vtr', 'assertedLoginIdentity'],
    clientAuthMethods: ['private_key_jwt'],
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384'],
      idTokenSigningAlgValues: ['RS256', 'RS384', 'RS512', 'PS256', 'PS512'],
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      userinfo: { enabled: true },
    },
    cookies: { keys: ['nrls-test-op-cookie-key'] },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 120,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      ...config.ttl,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html lang="en"><head><title>OP error</title></head><body><main><h1>${out.error}</h1><p>${out.error_description ?? ''}</p></main></body></html>`;
    },
  });
  // Behind the hostile-network proxy, the proxy's host is the public one.
  provider.proxy = true;

  const offsetMs = Number(config.clockOffsetSeconds ?? 0) * 1000;
  if (offsetMs !== 0) {
    // Only ID tokens are issued on the shifted clock: cookies, codes, access
    // tokens and client assertions keep real time, so a test can complete a
    // login and receive an ID token that really expired (iat/exp in the past).
    const { issue } = provider.IdToken.prototype;
    const realNow = Date.now;
    provider.IdToken.prototype.issue = async function shiftedIssue(options = {}) {
      if (options.use !== 'idtoken') return issue.call(this, options);
      Date.now = () => realNow() + offsetMs;
      try {
        return await issue.call(this, options);
      } finally {
        Date.now = realNow;
      }
    };
  }

  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  server.on('request', provider.callback());
  console.log(`LISTENING ${listening}`);
  console.log(`READY ${issuer}`);
});

// The parent holds our stdin; when it exits (or dies) the pipe closes.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
