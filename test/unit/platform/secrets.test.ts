/** API keys are stored as sha256 digests and checked in constant time. */
import { expect } from 'chai';
import { generateApiKey, matchesHash, sha256 } from '../../../src/platform/lib/secrets.js';

describe('secrets (unit)', () => {
  it('matchesHash: true for the key of a stored digest, false for any other key or a malformed digest', () => {
    const { key, hash } = generateApiKey();
    expect(hash).to.equal(sha256(key));
    expect(matchesHash(key, hash)).to.equal(true);
    expect(matchesHash(`${key}x`, hash)).to.equal(false);
    expect(matchesHash(key.slice(0, -1), hash)).to.equal(false);
    expect(matchesHash(generateApiKey().key, hash)).to.equal(false);
    expect(matchesHash(key, hash.slice(0, -2))).to.equal(false); // a digest of another length: never equal, never thrown
    expect(matchesHash(key, '')).to.equal(false);
    expect(matchesHash(key, hash.toUpperCase())).to.equal(true); // hex is hex
  });
});
