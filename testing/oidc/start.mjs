// Starts testing/oidc/provider.mjs from a node test (browser journeys), as the
// Rust support (crates/web/tests/support/oidc.rs) does from cargo tests.
//
//   const op = await startOpenIdProvider({ profile: 'cis2', clients, accounts });
//   op.issuer; op.signingKey; await op.stop();
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const here = new URL('.', import.meta.url).pathname;

/** An RSA key pair as JWKs and PEM (the same shape as keygen.mjs prints). */
export function rsaKey(kid) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    kid,
    private_jwk: { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' },
    public_jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' },
    private_pem: privateKey.export({ format: 'pem', type: 'pkcs8' }),
  };
}

/**
 * Starts the OP with `config` (provider.mjs documents the keys; `keys` may be
 * omitted and one signing key is generated). Resolves once it prints READY.
 */
export async function startOpenIdProvider(config) {
  const signingKey = config.keys ? null : rsaKey('op-1');
  const full = { ...config, keys: config.keys ?? [signingKey.private_jwk] };
  const dir = mkdtempSync(join(tmpdir(), 'nrls-op-'));
  const path = join(dir, 'op.json');
  writeFileSync(path, JSON.stringify(full));
  const child = spawn(process.execPath, [join(here, 'provider.mjs'), path, String(config.port ?? 0)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (chunk) => { log += chunk; });
  const issuer = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the OP did not start:\n${log}`)), 20_000);
    child.on('exit', (code) => reject(new Error(`the OP exited (${code}):\n${log}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('READY ')) {
        clearTimeout(timer);
        resolve(line.slice('READY '.length).replace(/\/$/, ''));
      }
    });
  });
  return {
    issuer,
    signingKey,
    log: () => log,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.on('exit', () => resolve());
      child.stdin.end();
    }),
  };
}
