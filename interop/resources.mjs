// The RFC 8707 resource indicators of both interop servers: an allow-list, each resource with
// its scopes, token format and lifetime; any other resource gets `invalid_target`.

import { errors } from 'oidc-provider';

export function resourceIndicators(resources) {
  return {
    enabled: true,
    defaultResource: async () => undefined,
    useGrantedResource: async () => false,
    getResourceServerInfo: async (_ctx, resourceIndicator) => {
      const info = resources[resourceIndicator];
      if (!info) {
        throw new errors.InvalidTarget();
      }
      return info;
    },
  };
}
