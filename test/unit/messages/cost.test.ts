import { expect } from 'chai';
import { messageCost } from '../../../src/messages/domain/channels/index.js';
import { GSM_BASIC_CHARS, GSM_EXTENSION_CHARS, smsEncoding } from '../../../src/messages/domain/channels/sms.channel.js';

describe('message cost', () => {
  const cases: [string, string, 'GSM-7' | 'UCS-2', number][] = [
    ['one GSM-7 character', 'a', 'GSM-7', 1],
    ['160 GSM-7 characters', 'a'.repeat(160), 'GSM-7', 1],
    ['161 GSM-7 characters', 'a'.repeat(161), 'GSM-7', 2],
    ['306 GSM-7 characters (2 × 153)', 'a'.repeat(306), 'GSM-7', 2],
    ['307 GSM-7 characters', 'a'.repeat(307), 'GSM-7', 3],
    ['80 euro signs (extension characters count twice: 160 septets)', '€'.repeat(80), 'GSM-7', 1],
    ['81 euro signs (162 septets)', '€'.repeat(81), 'GSM-7', 2],
    ['GSM-7 accents and Greek', 'Ça va? ΔΦΓ äöü', 'GSM-7', 1],
    ['70 UCS-2 characters', 'ж'.repeat(70), 'UCS-2', 1],
    ['71 UCS-2 characters', 'ж'.repeat(71), 'UCS-2', 2],
    ['134 UCS-2 characters (2 × 67)', 'ж'.repeat(134), 'UCS-2', 2],
    ['135 UCS-2 characters', 'ж'.repeat(135), 'UCS-2', 3],
    ['one non-GSM character turns the whole message UCS-2', `${'a'.repeat(100)}✓`, 'UCS-2', 2],
    ['an emoji counts as two UTF-16 units', '😀'.repeat(35), 'UCS-2', 1],
    ['36 emoji (72 units)', '😀'.repeat(36), 'UCS-2', 2],
    ['1,600 GSM-7 characters (the largest SMS body)', 'a'.repeat(1600), 'GSM-7', 11],
  ];
  for (const [label, body, encoding, segments] of cases) {
    it(`${label}: ${encoding}, ${segments} segment(s)`, () => {
      expect(smsEncoding(body)).to.include({ encoding, segments });
      expect(messageCost('sms', body)).to.equal(segments);
    });
  }

  it('every UTF-16 code unit is classed as GSM 03.38 says: basic 1 septet, extension 2, anything else (a lone surrogate too) UCS-2', () => {
    const basic = new Set(GSM_BASIC_CHARS);
    const extension = new Set(GSM_EXTENSION_CHARS);
    expect(basic.size + extension.size).to.equal(137);
    for (let code = 0; code <= 0xffff; code++) {
      const ch = String.fromCharCode(code);
      const septets = basic.has(ch) ? 1 : extension.has(ch) ? 2 : 0;
      const expected = septets ? { encoding: 'GSM-7', units: septets } : { encoding: 'UCS-2', units: 1 };
      expect(smsEncoding(ch), `U+${code.toString(16)}`).to.include(expected);
    }
  });

  it('an email costs 1 whatever its length', () => {
    expect(messageCost('email', 'x'.repeat(100_000))).to.equal(1);
  });
});
