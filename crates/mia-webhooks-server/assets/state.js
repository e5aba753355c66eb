// The shared state of the page: who is signed in, what is shown.

export const state = {
  token: null,
  // What the token is (GET /api/me): { role, tenantId, projectId, canManageWebhooks, canEmitEvents }.
  me: null,
  catalog: null,
  route: { kind: 'instance', tenant: '', project: '', events: [] },
  webhooks: [],
  nextCursor: null,
  listGeneration: 0,
  // webhook id -> { items, nextCursor, attempts: Map(deliveryId -> attempts or null), polls, timer, generation }
  panels: new Map(),
};
