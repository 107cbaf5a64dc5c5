import { describe, expect, it } from 'vitest';
import { clearSession, loadSession, parseSignInAnswer, saveSession, SESSION_KEY, signIn, signOut, SignInError } from './session';

const answer = {
  accessKeyId: 'ASIAEXAMPLE',
  secretAccessKey: 'secret',
  sessionToken: 'token',
  expiration: '2026-12-01T00:00:00Z',
  accountId: '123456789012',
  accountName: 'alice',
};

function memoryStore() {
  const m = new Map<string, string>();
  return {
    getItem: (k: string) => m.get(k) ?? null,
    setItem: (k: string, v: string) => void m.set(k, v),
    removeItem: (k: string) => void m.delete(k),
    map: m,
  };
}

function jsonResponse(status: number, body: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' },
  });
}

describe('parseSignInAnswer', () => {
  it('accepts a full answer and adds the region', () => {
    expect(parseSignInAnswer(answer, 'eu-west-1').session).toEqual({ ...answer, region: 'eu-west-1' });
  });
  it('names missing fields', () => {
    expect(parseSignInAnswer({ ...answer, sessionToken: undefined, accountId: '' }).error).toBe('the answer lacks sessionToken, accountId');
    expect(parseSignInAnswer(null).error).toMatch(/not a JSON object/);
  });
});

describe('session storage', () => {
  it('saves, loads and clears under kiln.session', () => {
    const store = memoryStore();
    saveSession(store, { ...answer, region: 'us-west-2' });
    expect(JSON.parse(store.map.get(SESSION_KEY) ?? '{}').region).toBe('us-west-2');
    expect(loadSession(store)).toEqual({ ...answer, region: 'us-west-2' });
    clearSession(store);
    expect(loadSession(store)).toBeNull();
  });
  it('ignores broken entries and defaults the region', () => {
    const store = memoryStore();
    store.setItem(SESSION_KEY, '{not json');
    expect(loadSession(store)).toBeNull();
    store.setItem(SESSION_KEY, JSON.stringify(answer));
    expect(loadSession(store)?.region).toBe('us-east-1');
  });
});

describe('signIn', () => {
  it('posts the account and password as JSON', async () => {
    let seen: { url: string; init?: RequestInit } | undefined;
    const s = await signIn('alice', 'pw', 'us-east-1', async (url, init) => {
      seen = { url, init };
      return jsonResponse(200, answer);
    });
    expect(seen?.url).toBe('/console/api/signin');
    expect(seen?.init?.method).toBe('POST');
    expect(JSON.parse(String(seen?.init?.body))).toEqual({ account: 'alice', password: 'pw' });
    expect(s.accountName).toBe('alice');
  });

  it("surfaces the server's code and message", async () => {
    const err = await signIn('a', 'b', 'us-east-1', async () =>
      jsonResponse(429, { code: 'Throttling', message: 'Too many failed sign-ins; wait a minute.' }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SignInError);
    expect((err as SignInError).code).toBe('Throttling');
    expect((err as SignInError).message).toBe('Too many failed sign-ins; wait a minute.');
  });

  it('falls back to the status when the body is not JSON', async () => {
    const err = (await signIn('a', 'b', 'us-east-1', async () => new Response('nope', { status: 401 })).catch((e) => e)) as SignInError;
    expect(err.code).toBe('AuthFailure');
    expect(err.status).toBe(401);
  });

  it('rejects an incomplete answer', async () => {
    const err = (await signIn('a', 'b', 'us-east-1', async () => jsonResponse(200, { accessKeyId: 'x' })).catch((e) => e)) as SignInError;
    expect(err.code).toBe('InvalidResponse');
    expect(err.message).toMatch(/secretAccessKey/);
  });
});

describe('signOut', () => {
  it('sends the key id and token and accepts 204', async () => {
    let body: unknown;
    await signOut(answer, async (_url, init) => {
      body = JSON.parse(String(init?.body));
      return new Response(null, { status: 204 });
    });
    expect(body).toEqual({ accessKeyId: 'ASIAEXAMPLE', sessionToken: 'token' });
  });
});
