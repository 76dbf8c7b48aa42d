"""Network building blocks of DreamerV3 as flax modules: layers with the official init and RMSNorm,
the block-linear layer, the image encoder and decoder, and MLP heads.

Every layer's kernel is drawn from a truncated normal scaled by 1/sqrt(fan_in) (times `outscale` for
output layers); biases start at zero; RMSNorm is computed in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["MLP", "BlockLinear", "Decoder", "Encoder", "Linear", "Norm", "trunc_normal_init"]

TRUNC_STD = 1.1368  # std correction of a normal truncated at +-2 std


def trunc_normal_init(fan_in: int, scale: float = 1.0):
    """Return an initializer: truncnormal(-2, 2) x 1.1368 x scale / sqrt(fan_in)."""
    std = TRUNC_STD * scale / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)

    return init


class Linear(nn.Module):
    """Dense layer with the official init; compute in `dtype`, parameters in float32."""

    features: int
    outscale: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", trunc_normal_init(fan_in, self.outscale), (fan_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x = x.astype(self.dtype)
        return x @ kernel.astype(self.dtype) + bias.astype(self.dtype)


class BlockLinear(nn.Module):
    """Block-diagonal dense layer: `groups` independent kernels, each from in/groups to features/groups.

    The init's fan-in is the total input size, as in the official implementation.
    """

    features: int
    groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        g = self.groups
        assert fan_in % g == 0 and self.features % g == 0, (fan_in, self.features, g)
        kernel = self.param("kernel", trunc_normal_init(fan_in), (g, fan_in // g, self.features // g))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        xs = x.astype(self.dtype).reshape(*x.shape[:-1], g, fan_in // g)
        y = jnp.einsum("...gi,gio->...go", xs, kernel.astype(self.dtype))
        return y.reshape(*x.shape[:-1], self.features) + bias.astype(self.dtype)


class Norm(nn.Module):
    """RMSNorm over the last axis, in float32: x * rsqrt(mean(x^2) + 1e-4) * scale."""

    eps: float = 1e-4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        dtype = x.dtype
        x = x.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + self.eps) * scale
        return x.astype(dtype)


class MLP(nn.Module):
    """`layers` x (Linear -> RMSNorm -> SiLU)."""

    layers: int
    units: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(self.layers):
            x = nn.silu(Norm()(Linear(self.units, dtype=self.dtype)(x)))
        return x


class Conv(nn.Module):
    """'same' 2D convolution with the official init (fan-in = k x k x C_in)."""

    features: int
    kernel: int = 5
    outscale: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin = self.kernel, x.shape[-1]
        kernel = self.param("kernel", trunc_normal_init(k * k * cin, self.outscale), (k, k, cin, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias.astype(self.dtype)


class Encoder(nn.Module):
    """Image encoder: stages of Conv(k5, s1) -> 2x2 max-pool -> RMSNorm -> SiLU, then flatten.

    Input uint8[..., H, W, C]; output float[..., (H/16) * (W/16) * 4 * depth].
    """

    depth: int
    mults: Sequence[int] = (2, 3, 4, 4)
    kernel: int = 5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        lead = image.shape[:-3]
        x = image.reshape(-1, *image.shape[-3:]).astype(self.dtype) / 255.0 - 0.5
        for mult in self.mults:
            x = Conv(self.depth * mult, self.kernel, dtype=self.dtype)(x)
            b, h, w, c = x.shape
            x = x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
            x = nn.silu(Norm()(x))
        return x.reshape(*lead, -1)


class Decoder(nn.Module):
    """Image decoder from (deter, stoch): a block-linear spatial map of deter plus an MLP of stoch at
    1/16 resolution, then nearest-neighbour x2 upsampling with Conv -> RMSNorm -> SiLU, and a sigmoid.

    Returns float[..., H, W, C] in [0, 1].
    """

    shape: tuple[int, int, int]
    depth: int
    units: int
    mults: Sequence[int] = (2, 3, 4, 4)
    kernel: int = 5
    blocks: int = 8
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, deter: jax.Array, stoch: jax.Array) -> jax.Array:
        h, w, c = self.shape
        stages = len(self.mults)
        minh, minw = h // 2**stages, w // 2**stages
        ch = self.depth * self.mults[-1]
        lead = deter.shape[:-1]
        deter = deter.reshape(-1, deter.shape[-1])
        stoch = stoch.reshape(deter.shape[0], -1)
        g = self.blocks
        x0 = BlockLinear(minh * minw * ch, g, dtype=self.dtype)(deter)
        # (g, h, w, c/g) per block -> (h, w, g * c/g): every deter block paints some channels of every pixel.
        x0 = x0.reshape(-1, g, minh, minw, ch // g).transpose(0, 2, 3, 1, 4).reshape(-1, minh, minw, ch)
        x1 = nn.silu(Norm()(Linear(2 * self.units, dtype=self.dtype)(stoch)))
        x1 = Linear(minh * minw * ch, dtype=self.dtype)(x1).reshape(-1, minh, minw, ch)
        x = nn.silu(Norm()(x0 + x1))
        for mult in reversed(self.mults[:-1]):
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
            x = nn.silu(Norm()(Conv(self.depth * mult, self.kernel, dtype=self.dtype)(x)))
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        x = Conv(c, self.kernel, dtype=self.dtype)(x)
        return jax.nn.sigmoid(x.astype(jnp.float32)).reshape(*lead, h, w, c)
