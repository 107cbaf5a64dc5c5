import { DescribeRegionsCommand } from '@aws-sdk/client-ec2';
import { useCallback, useEffect, useState } from 'react';
import { ApiProvider, useQuery } from './api';
import { isExpired } from './lib/time';
import { parseHash, href, type Page, type Route } from './lib/route';
import { clearSession, DEFAULT_REGION, loadSession, saveSession, signOut, type Session } from './lib/session';
import SignIn from './pages/SignIn';
import Dashboard from './pages/Dashboard';
import Instances from './pages/Instances';
import Launch from './pages/Launch';
import Amis from './pages/Amis';
import KeyPairs from './pages/KeyPairs';
import SecurityGroups from './pages/SecurityGroups';
import Volumes from './pages/Volumes';
import Snapshots from './pages/Snapshots';
import Addresses from './pages/Addresses';
import Vpcs from './pages/Vpcs';
import LaunchTemplates from './pages/LaunchTemplates';

const NAV: { page: Page; label: string }[] = [
  { page: 'dashboard', label: 'Dashboard' },
  { page: 'instances', label: 'Instances' },
  { page: 'launch', label: 'Launch instances' },
  { page: 'templates', label: 'Launch templates' },
  { page: 'amis', label: 'AMIs' },
  { page: 'keypairs', label: 'Key pairs' },
  { page: 'security-groups', label: 'Security groups' },
  { page: 'volumes', label: 'Volumes' },
  { page: 'snapshots', label: 'Snapshots' },
  { page: 'addresses', label: 'Elastic IPs' },
  { page: 'vpcs', label: 'VPCs' },
];

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    const on = () => setRoute(parseHash(window.location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

function initialSession(): Session | null {
  const s = loadSession(window.sessionStorage);
  if (s && isExpired(s.expiration)) {
    clearSession(window.sessionStorage);
    return null;
  }
  return s;
}

export default function App() {
  const [session, setSession] = useState<Session | null>(initialSession);
  const [message, setMessage] = useState<string | undefined>();
  const route = useRoute();

  const endSession = useCallback((msg: string) => {
    clearSession(window.sessionStorage);
    setSession(null);
    setMessage(msg);
  }, []);

  // Expire the session on time even when nothing is called.
  useEffect(() => {
    if (!session) return;
    const ms = new Date(session.expiration).getTime() - Date.now();
    if (!Number.isFinite(ms)) return;
    const t = setTimeout(() => endSession('Your session has expired. Sign in again.'), Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    return () => clearTimeout(t);
  }, [session, endSession]);

  if (!session) {
    return (
      <SignIn
        message={message}
        onSignedIn={(s) => {
          saveSession(window.sessionStorage, s);
          setMessage(undefined);
          setSession(s);
          if (route.page === 'signin') window.location.hash = href('dashboard');
        }}
      />
    );
  }

  const changeRegion = (region: string) => {
    const s = { ...session, region };
    saveSession(window.sessionStorage, s);
    setSession(s);
  };

  const doSignOut = async () => {
    try {
      await signOut(session);
    } catch {
      // The local session ends either way.
    }
    endSession('You have signed out.');
  };

  return (
    <ApiProvider session={session} onSessionOver={endSession}>
      <Shell session={session} route={route} onRegion={changeRegion} onSignOut={doSignOut} />
    </ApiProvider>
  );
}

function Shell({ session, route, onRegion, onSignOut }: { session: Session; route: Route; onRegion: (r: string) => void; onSignOut: () => void }) {
  const [navOpen, setNavOpen] = useState(false);
  useEffect(() => setNavOpen(false), [route]);
  const page = route.page === 'signin' ? 'dashboard' : route.page;
  return (
    <div className="app">
      <a className="skip-link" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>
        Skip to content
      </a>
      <header className="topbar">
        <button type="button" className="btn-icon nav-toggle" aria-expanded={navOpen} aria-controls="nav" onClick={() => setNavOpen((o) => !o)}>
          <span aria-hidden="true">☰</span>
          <span className="sr-only">Menu</span>
        </button>
        <a className="brand" href={href('dashboard')}>
          <span className="brand-mark" aria-hidden="true">K</span> Kiln
        </a>
        <div className="topbar-right">
          <RegionSelect region={session.region} onChange={onRegion} />
          <span className="account" data-testid="account-name" title={`Account ${session.accountId}`}>
            {session.accountName} <span className="muted">({session.accountId})</span>
          </span>
          <button type="button" onClick={onSignOut} data-testid="signout">
            Sign out
          </button>
        </div>
      </header>
      <nav id="nav" className={navOpen ? 'nav nav-open' : 'nav'} aria-label="Console">
        <ul>
          {NAV.map((n) => (
            <li key={n.page}>
              <a href={href(n.page)} aria-current={n.page === page ? 'page' : undefined} data-testid={`nav-${n.page}`}>
                {n.label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" className="main" tabIndex={-1}>
        <PageView key={`${page}:${session.region}`} route={{ ...route, page }} />
      </main>
    </div>
  );
}

function PageView({ route }: { route: Route }) {
  switch (route.page) {
    case 'instances':
      return <Instances params={route.params} />;
    case 'launch':
      return <Launch params={route.params} />;
    case 'amis':
      return <Amis params={route.params} />;
    case 'keypairs':
      return <KeyPairs />;
    case 'security-groups':
      return <SecurityGroups params={route.params} />;
    case 'volumes':
      return <Volumes />;
    case 'snapshots':
      return <Snapshots />;
    case 'templates':
      return <LaunchTemplates />;
    case 'addresses':
      return <Addresses />;
    case 'vpcs':
      return <Vpcs />;
    default:
      return <Dashboard />;
  }
}

function RegionSelect({ region, onChange }: { region: string; onChange: (r: string) => void }) {
  const q = useQuery((c) => c.send(new DescribeRegionsCommand({})), []);
  const names = (q.data?.Regions ?? []).map((r) => r.RegionName ?? '').filter(Boolean).sort();
  const options = names.includes(region) ? names : [region, ...names];
  return (
    <div className="region">
      <label htmlFor="region-select">Region</label>
      <select id="region-select" value={region} onChange={(e) => onChange(e.target.value || DEFAULT_REGION)} data-testid="region-select">
        {options.map((r) => (
          <option key={r} value={r}>
            {r}
          </option>
        ))}
      </select>
    </div>
  );
}
