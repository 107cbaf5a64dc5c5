// Classifying errors from the EC2 client and the sign-in API.

/** An error as the console shows it: EC2's code and message. */
export interface ApiErrorInfo {
  code: string;
  message: string;
}

/** Codes that mean the session's credentials no longer work. */
const SESSION_OVER_CODES = new Set(['ExpiredToken', 'AuthFailure', 'InvalidClientTokenId', 'UnrecognizedClientException']);

/**
 * The code and message of anything thrown by an SDK call or fetch. The SDK v3 sets
 * `.name` to EC2's error code (and usually `.Code` too); a network failure is a
 * TypeError with no code of EC2's.
 */
export function errorInfo(err: unknown): ApiErrorInfo {
  if (err && typeof err === 'object') {
    const e = err as { Code?: unknown; code?: unknown; name?: unknown; message?: unknown };
    const message = typeof e.message === 'string' && e.message ? e.message : String(err);
    for (const c of [e.Code, e.code]) {
      if (typeof c === 'string' && c) return { code: c, message };
    }
    if (typeof e.name === 'string' && e.name && e.name !== 'Error') {
      if (e.name === 'TypeError' && /fetch|network/i.test(message)) {
        return { code: 'NetworkError', message: 'Kiln could not be reached: ' + message };
      }
      return { code: e.name, message };
    }
    return { code: 'Error', message };
  }
  return { code: 'Error', message: String(err) };
}

/** Whether the error means the session is over (sign in again). */
export function isSessionOver(err: unknown): boolean {
  return SESSION_OVER_CODES.has(errorInfo(err).code);
}

/** One line for an error: "Code: message". */
export function formatError(err: unknown): string {
  const { code, message } = errorInfo(err);
  if (message.startsWith(code)) return message;
  return `${code}: ${message}`;
}
