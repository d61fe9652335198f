// An independent check of a modelpack release signature: @sigstore/verify (the verifier npm and
// sigstore-js use), not modelpack's own code. Usage: node verify-release.js BUNDLE.json KEY.pub DIGEST
// Prints "verified" and exits 0, or prints the reason and exits 1.
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity } = require('@sigstore/verify');

const [bundlePath, keyPath, digest] = process.argv.slice(2);
try {
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  const publicKey = crypto.createPublicKey(fs.readFileSync(keyPath));
  // Key-signed bundles carry no certificate, timestamp or transparency-log entry: the trust is the key
  // itself, so the thresholds that would demand those are 0 and the key finder hands back the given key.
  const trust = {
    certificateAuthorities: [],
    timestampAuthorities: [],
    tlogs: [],
    ctlogs: [],
    publicKey: () => ({ publicKey, validFor: () => true }),
  };
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  verifier.verify(toSignedEntity(bundle));
  // The signature is good; now what it is over: cosign's statement naming the digest.
  const env = bundle.content.dsseEnvelope;
  const statement = JSON.parse(Buffer.from(env.payload).toString('utf8'));
  const hex = digest.replace(/^sha256:/, '');
  if (statement.predicateType !== 'https://sigstore.dev/cosign/sign/v1') {
    throw new Error(`predicate ${statement.predicateType}`);
  }
  if (!statement.subject.some((s) => s.digest && s.digest.sha256 === hex)) {
    throw new Error(`statement is not over ${digest}`);
  }
  console.log('verified');
} catch (e) {
  console.log(`refused: ${e.message}`);
  process.exit(1);
}
