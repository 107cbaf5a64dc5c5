// The signed-in session: Kiln's sign-in API and its copy in sessionStorage.

export const SESSION_KEY = 'kiln.session';
export const DEFAULT_REGION = 'us-east-1';

export interface Session {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: string;
  accountId: string;
  accountName: string;
  region: string;
}

type Store = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;

const FIELDS = ['accessKeyId', 'secretAccessKey', 'sessionToken', 'expiration', 'accountId', 'accountName'] as const;

/** Checks a sign-in answer; returns the session (with the region) or a description of what is missing. */
export function parseSignInAnswer(body: unknown, region = DEFAULT_REGION): { session?: Session; error?: string } {
  if (!body || typeof body !== 'object') return { error: 'the answer is not a JSON object' };
  const b = body as Record<string, unknown>;
  const missing = FIELDS.filter((f) => typeof b[f] !== 'string' || (b[f] as string) === '');
  if (missing.length) return { error: `the answer lacks ${missing.join(', ')}` };
  const s = Object.fromEntries(FIELDS.map((f) => [f, b[f] as string])) as Omit<Session, 'region'>;
  return { session: { ...s, region } };
}

export function loadSession(store: Store): Session | null {
  const raw = store.getItem(SESSION_KEY);
  if (!raw) return null;
  try {
    const parsed = JSON.parse(raw) as Record<string, unknown>;
    const { session } = parseSignInAnswer(parsed, typeof parsed.region === 'string' && parsed.region ? parsed.region : DEFAULT_REGION);
    return session ?? null;
  } catch {
    return null;
  }
}

export function saveSession(store: Store, s: Session): void {
  store.setItem(SESSION_KEY, JSON.stringify(s));
}

export function clearSession(store: Store): void {
  store.removeItem(SESSION_KEY);
}

export class SignInError extends Error {
  constructor(
    public code: string,
    message: string,
    public status: number,
  ) {
    super(message);
    this.name = code;
  }
}

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

async function readError(res: Response): Promise<SignInError> {
  let code = res.status === 401 ? 'AuthFailure' : res.status === 429 ? 'Throttling' : `HTTP ${res.status}`;
  let message = res.statusText || 'The sign-in failed.';
  try {
    const body = (await res.json()) as { code?: unknown; message?: unknown };
    if (typeof body.code === 'string') code = body.code;
    if (typeof body.message === 'string' && body.message) message = body.message;
  } catch {
    // Not JSON: keep the status.
  }
  return new SignInError(code, message, res.status);
}

/** POST /console/api/signin. Throws SignInError with the server's code and message. */
export async function signIn(account: string, password: string, region = DEFAULT_REGION, fetchFn: Fetch = fetch): Promise<Session> {
  const res = await fetchFn('/console/api/signin', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ account, password }),
    credentials: 'same-origin',
  });
  if (!res.ok) throw await readError(res);
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new SignInError('InvalidResponse', 'Kiln answered the sign-in with something other than JSON.', res.status);
  }
  const { session, error } = parseSignInAnswer(body, region);
  if (!session) throw new SignInError('InvalidResponse', `Kiln's sign-in answer is incomplete: ${error}.`, res.status);
  return session;
}

/** POST /console/api/signout; the credentials stop working. */
export async function signOut(s: Pick<Session, 'accessKeyId' | 'sessionToken'>, fetchFn: Fetch = fetch): Promise<void> {
  const res = await fetchFn('/console/api/signout', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ accessKeyId: s.accessKeyId, sessionToken: s.sessionToken }),
    credentials: 'same-origin',
  });
  if (!res.ok && res.status !== 401) throw await readError(res);
}
