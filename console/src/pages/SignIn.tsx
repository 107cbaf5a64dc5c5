import { useState } from 'react';
import { signIn, type Session } from '../lib/session';
import { errorInfo } from '../lib/errors';

export default function SignIn({ message, onSignedIn }: { message?: string; onSignedIn: (s: Session) => void }) {
  const [account, setAccount] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<{ code: string; message: string } | null>(null);

  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await signIn(account.trim(), password));
    } catch (e) {
      setError(errorInfo(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="signin-page">
      <main className="signin-card">
        <div className="brand brand-large">
          <span className="brand-mark" aria-hidden="true">K</span> Kiln
        </div>
        <h1>Sign in to the console</h1>
        {message && !error && (
          <div className="notice notice-info" role="status" data-testid="signin-message">
            {message}
          </div>
        )}
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void submit();
          }}
        >
          <div className="field">
            <label htmlFor="signin-account">Account name</label>
            <input
              id="signin-account"
              name="username"
              autoComplete="username"
              value={account}
              onChange={(e) => setAccount(e.target.value)}
              required
              autoFocus
              data-testid="signin-account"
            />
          </div>
          <div className="field">
            <label htmlFor="signin-password">Password</label>
            <input
              id="signin-password"
              name="password"
              type="password"
              autoComplete="current-password"
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              required
              data-testid="signin-password"
            />
          </div>
          <div className="signin-error-slot">
            {error && (
              <div className="error" role="alert" data-testid="signin-error" data-code={error.code}>
                <code className="error-code">{error.code}</code> {error.message}
              </div>
            )}
          </div>
          <button type="submit" className="btn-primary btn-block" disabled={busy || !account.trim() || !password} data-testid="signin-submit">
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
        <p className="muted small">The console uses Kiln's EC2 API with temporary credentials that end when you sign out.</p>
      </main>
    </div>
  );
}
