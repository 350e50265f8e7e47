// Bearer tokens minted inside k6, for scenarios with more users than `marquee token` can mint
// beforehand in reasonable time (one process per token: 20,000 of them take minutes).
//
//   JWT_SECRET     the server's MARQUEE__AUTH__JWT_SECRET (loadtest/run makes one per run)
//   JWT_ISSUER     the server's auth.issuer, when it sets one (default: none)
//   JWT_AUDIENCE   the server's auth.audience, when it sets one (default: none)
//   TOKEN_TTL      how long a token is valid (default 2h; the server refuses more than its
//                  auth.max_token_lifetime, 24h by default)
//
// The tokens are what `marquee token --user N` mints: HS256, `sub` = the user id, `iat`, `exp`,
// and `iss` / `aud` when configured.

import crypto from 'k6/crypto';
import encoding from 'k6/encoding';

import { envDuration, envString, parseDuration } from './config.js';

const HEADER = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');

/** A token minter for the configured secret; throws at start-up when JWT_SECRET is unset. */
export function tokenMinter() {
  const secret = envString('JWT_SECRET', undefined);
  if (secret === undefined) throw new Error('JWT_SECRET is not set: the server\'s MARQUEE__AUTH__JWT_SECRET');
  const issuer = envString('JWT_ISSUER', undefined);
  const audience = envString('JWT_AUDIENCE', undefined);
  const ttlSeconds = Math.floor(parseDuration(envDuration('TOKEN_TTL', '2h'), 'TOKEN_TTL') / 1000);
  return (user) => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: String(user), iat: now, exp: now + ttlSeconds };
    if (issuer !== undefined) claims.iss = issuer;
    if (audience !== undefined) claims.aud = audience;
    const payload = `${HEADER}.${encoding.b64encode(JSON.stringify(claims), 'rawurl')}`;
    return `${payload}.${crypto.hmac('sha256', secret, payload, 'base64rawurl')}`;
  };
}
