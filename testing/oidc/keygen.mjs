// Generates RSA signing keys for tests, with OpenSSL's speed (an RSA key in
// an unoptimised Rust test build takes seconds).
//
//   node testing/oidc/keygen.mjs <kid> [<kid> ...]
//
// Prints a JSON array: [{ kid, private_jwk, public_jwk, private_pem }].
import { generateKeyPairSync } from 'node:crypto';

const kids = process.argv.slice(2);
if (kids.length === 0) {
  console.error('usage: node keygen.mjs <kid> [<kid> ...]');
  process.exit(2);
}
const out = kids.map((kid) => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    kid,
    private_jwk: { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' },
    public_jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' },
    private_pem: privateKey.export({ format: 'pem', type: 'pkcs8' }),
  };
});
console.log(JSON.stringify(out));
