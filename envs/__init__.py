"""Games behind one Gymnasium env API, found by id: `envs.make(id, **kwargs)`.

Each env returns dict observations with an `image` uint8[H, W, 3]. Heavy game dependencies are imported
inside the env that needs them, so importing this package is cheap.
"""

from envs.config import EnvConfig
from envs.errors import EnvError
from envs.registry import EnvSpec, make, register, spec, specs

__all__ = ["EnvConfig", "EnvError", "EnvSpec", "make", "register", "spec", "specs"]

register("crafter", "envs.crafter_env:CrafterEnv",
         "Crafter survival world, 17 actions, scored by 22 achievements")
