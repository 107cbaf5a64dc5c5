// The EC2 client of the signed-in session, and hooks that call it.
import { EC2Client } from '@aws-sdk/client-ec2';
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type DependencyList, type ReactNode } from 'react';
import { formatError, isSessionOver } from './lib/errors';
import type { Session } from './lib/session';

export function makeClient(s: Session, region = s.region): EC2Client {
  return new EC2Client({
    region,
    endpoint: window.location.origin,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, sessionToken: s.sessionToken },
    maxAttempts: 2,
  });
}

export interface Api {
  session: Session;
  client: EC2Client;
  /** Runs an SDK call; on ExpiredToken or AuthFailure the session ends and sign-in shows. */
  call: <T>(fn: (c: EC2Client) => Promise<T>) => Promise<T>;
  /** The same for a client of another region (CopyImage's destination). */
  callIn: <T>(region: string, fn: (c: EC2Client) => Promise<T>) => Promise<T>;
}

const ApiContext = createContext<Api | null>(null);

export function ApiProvider({ session, onSessionOver, children }: { session: Session; onSessionOver: (message: string) => void; children: ReactNode }) {
  const client = useMemo(() => makeClient(session), [session]);
  const overRef = useRef(onSessionOver);
  overRef.current = onSessionOver;
  const value = useMemo<Api>(() => {
    const guard = async <T,>(c: EC2Client, fn: (c: EC2Client) => Promise<T>): Promise<T> => {
      try {
        return await fn(c);
      } catch (e) {
        if (isSessionOver(e)) overRef.current(`Your session has ended (${formatError(e)}). Sign in again.`);
        throw e;
      }
    };
    return {
      session,
      client,
      call: (fn) => guard(client, fn),
      callIn: (region, fn) => guard(region === session.region ? client : makeClient(session, region), fn),
    };
  }, [session, client]);
  useEffect(() => () => client.destroy(), [client]);
  return <ApiContext.Provider value={value}>{children}</ApiContext.Provider>;
}

export function useApi(): Api {
  const api = useContext(ApiContext);
  if (!api) throw new Error('useApi outside ApiProvider');
  return api;
}

export interface Query<T> {
  data: T | undefined;
  error: unknown;
  /** True until the first answer (later refreshes keep the old data on screen). */
  loading: boolean;
  refreshing: boolean;
  updatedAt: Date | undefined;
  refresh: () => void;
}

/**
 * Loads with the session's client, again when deps change, and every `intervalMs` if
 * given (the next poll starts when the previous answer is in, so calls never pile up).
 */
export function useQuery<T>(fn: (c: EC2Client) => Promise<T>, deps: DependencyList, intervalMs?: number): Query<T> {
  const { call } = useApi();
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean; refreshing: boolean; updatedAt?: Date }>({
    loading: true,
    refreshing: false,
  });
  const [tick, setTick] = useState(0);
  const fnRef = useRef(fn);
  fnRef.current = fn;

  // Deps changes reset the data; ticks only refresh it.
  useEffect(() => {
    setState({ loading: true, refreshing: false });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);

  useEffect(() => {
    let alive = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      setState((s) => ({ ...s, refreshing: true }));
      try {
        const data = await call(fnRef.current);
        if (!alive) return;
        setState({ data, error: undefined, loading: false, refreshing: false, updatedAt: new Date() });
      } catch (error) {
        if (!alive) return;
        setState((s) => ({ ...s, error, loading: false, refreshing: false }));
      }
      if (alive && intervalMs) timer = setTimeout(run, intervalMs);
    };
    void run();
    return () => {
      alive = false;
      if (timer) clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick, intervalMs, call]);

  const refresh = useCallback(() => setTick((t) => t + 1), []);
  return { data: state.data, error: state.error, loading: state.loading, refreshing: state.refreshing, updatedAt: state.updatedAt, refresh };
}

/** Runs one mutation at a time, keeping its error for display. */
export function useAction() {
  const { call } = useApi();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const run = useCallback(
    async <T,>(fn: (c: import('@aws-sdk/client-ec2').EC2Client) => Promise<T>): Promise<T | undefined> => {
      setBusy(true);
      setError(undefined);
      try {
        return await call(fn);
      } catch (e) {
        setError(e);
        return undefined;
      } finally {
        setBusy(false);
      }
    },
    [call],
  );
  return { run, busy, error, setError };
}
