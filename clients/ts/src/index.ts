// @ferry/client: a client for ferry's WebSocket protocol, in browsers and Node.

export { connect, FerryClient } from "./client.js";
export type {
  ConnectOptions,
  ConnectionState,
  ConvSeq,
  FerryEvents,
  Notice,
  SendInput,
  SyncItem,
} from "./types.js";
export { ClientCode, FerryError, StopReconnecting, Unauthorized, codeName, describeClose } from "./errors.js";
export type { CloseInfo, CloseOrigin } from "./errors.js";
export type { DiscoveredConv, DiscoveryOptions } from "./discovery.js";
export type { LivenessOptions } from "./liveness.js";
export type { ChatMessage } from "./order.js";
export type { WebSocketConstructor, WebSocketLike } from "./socket.js";
export { ActiveEvent, ResponseBody_Code as ResponseCode } from "./gen/gateway_pb.js";
/** The generated protocol types, for anything the client does not wrap. */
export * as proto from "./gen/gateway_pb.js";
