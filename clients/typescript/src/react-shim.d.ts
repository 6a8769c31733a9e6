// The part of React's types the hook uses, so that it type-checks without React installed.
// Applications use React's own types instead.
declare module "react" {
  export function useState<S>(initial: S | (() => S)): [S, (value: S | ((previous: S) => S)) => void];
  export function useEffect(effect: () => void | (() => void), deps?: readonly unknown[]): void;
  export function useCallback<T extends (...args: never[]) => unknown>(callback: T, deps: readonly unknown[]): T;
  export function useRef<T>(initial: T): { current: T };
}
