// client.d.ts is written by hand; this file holds it to client.js. The import below resolves to
// the JavaScript itself (no declaration file sits next to it), typed from its JSDoc.
import * as impl from "../../src/adapters/web/static/client.js";
import type * as api from "@tidings/client";

/** Whether two types are the same (not merely assignable either way). */
type Same<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

// Every declaration is implemented, with a compatible type: a name declared but missing from
// client.js, or a signature that disagrees with its JSDoc, fails here.
impl satisfies typeof api;

// The tables are the same, code for code.
export const closeCodes: Same<typeof impl.CloseCode, typeof api.CloseCode> = true;
export const errorCodes: Same<typeof impl.ErrorCode, typeof api.ErrorCode> = true;
export const disconnects: Same<typeof impl.Disconnects, Readonly<api.DisconnectTable>> = true;

// Everything client.js exports is declared.
export const everyExportDeclared: Same<Exclude<keyof typeof impl, keyof typeof api>, never> = true;

// Every public member of the classes is declared, except the ones left out on purpose: `emit`
// (the client's own) and Subscription's `_`-methods (called by Tidings).
export const tidingsMembers: Same<Exclude<keyof impl.Tidings, keyof api.Tidings>, "emit"> = true;
export const subscriptionMembers: Same<
  Exclude<keyof impl.Subscription, keyof api.Subscription>,
  "emit" | "_subscribeFrame" | "_receive" | "_error" | "_disconnected" | "_ended"
> = true;

// And the other way: instances of the JavaScript classes are what the declarations say.
export function instances(tidings: impl.Tidings, subscription: impl.Subscription): void {
  tidings satisfies api.Tidings;
  subscription satisfies api.Subscription;
  new impl.TidingsError(403, "no") satisfies api.TidingsError;
}
