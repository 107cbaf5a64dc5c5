import { describe, expect, it } from 'vitest';
import { errorInfo, formatError, isSessionOver } from './errors';

// What the SDK v3 throws for an EC2 error: an Error whose name is the code.
function sdkError(code: string, message: string) {
  const e = new Error(message) as Error & { Code?: string; $fault: string };
  e.name = code;
  e.Code = code;
  e.$fault = 'client';
  return e;
}

describe('errorInfo', () => {
  it('takes the code from an SDK error', () => {
    expect(errorInfo(sdkError('InvalidAMIID.NotFound', "The image id '[ami-1]' does not exist"))).toEqual({
      code: 'InvalidAMIID.NotFound',
      message: "The image id '[ami-1]' does not exist",
    });
  });

  it('uses name when Code is missing', () => {
    const e = new Error('Request has expired');
    e.name = 'ExpiredToken';
    expect(errorInfo(e).code).toBe('ExpiredToken');
  });

  it('reports fetch failures as network errors', () => {
    const info = errorInfo(new TypeError('Failed to fetch'));
    expect(info.code).toBe('NetworkError');
    expect(info.message).toContain('Failed to fetch');
  });

  it('handles plain errors and non-errors', () => {
    expect(errorInfo(new Error('boom'))).toEqual({ code: 'Error', message: 'boom' });
    expect(errorInfo('text')).toEqual({ code: 'Error', message: 'text' });
  });
});

describe('isSessionOver', () => {
  it('is true for expired or refused credentials', () => {
    expect(isSessionOver(sdkError('ExpiredToken', 'The security token included in the request is expired'))).toBe(true);
    expect(isSessionOver(sdkError('AuthFailure', 'AWS was not able to validate the provided access credentials'))).toBe(true);
  });

  it('is false for ordinary API errors', () => {
    expect(isSessionOver(sdkError('UnauthorizedOperation', 'You are not authorized'))).toBe(false);
    expect(isSessionOver(sdkError('InvalidInstanceID.NotFound', 'nope'))).toBe(false);
    expect(isSessionOver(new TypeError('Failed to fetch'))).toBe(false);
  });
});

describe('formatError', () => {
  it('prefixes the code', () => {
    expect(formatError(sdkError('InvalidKeyPair.Duplicate', "The keypair 'k' already exists."))).toBe(
      "InvalidKeyPair.Duplicate: The keypair 'k' already exists.",
    );
  });
  it('does not repeat a code already in the message', () => {
    expect(formatError(sdkError('Throttling', 'Throttling: slow down'))).toBe('Throttling: slow down');
  });
});
