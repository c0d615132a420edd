"""loom.sdk: the contract between Loom, its plugins and its clients.

Everything a plugin author imports lives here: provider protocols, the pipeline protocol, wire
types, hookspecs and the ``hookimpl`` marker, errors, and the HTTP client. Nothing heavy is
imported (no torch, no model runtimes).
"""

from .config import EnvSecret, ModelConfig
from .errors import (
    AuthenticationFailed,
    Cancelled,
    CapabilityNotSupported,
    ConfigError,
    Conflict,
    InvalidRequest,
    LoomError,
    ModelNotFound,
    NotFound,
    OptionsError,
    OutOfMemory,
    PayloadTooLarge,
    PermissionDenied,
    PluginError,
    ProviderError,
    ProviderTimeout,
    QueueFull,
    RateLimited,
    Unavailable,
    UnsupportedParameter,
    WorkerCrashed,
)
from .hookspecs import hookimpl
from .protocols import (
    Embeddings,
    ImageJob,
    ModelSpec,
    Provider,
    RunContext,
    TextChunk,
    ToolCallDelta,
    VisionScores,
)
from .types import (
    AssistantMessage,
    Capability,
    ChatCompletionRequest,
    ChatMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)

__all__ = [
    "AssistantMessage",
    "AuthenticationFailed",
    "Cancelled",
    "Capability",
    "CapabilityNotSupported",
    "ChatCompletionRequest",
    "ChatMessage",
    "ConfigError",
    "Conflict",
    "Embeddings",
    "EnvSecret",
    "ImageJob",
    "InvalidRequest",
    "LoomError",
    "ModelConfig",
    "ModelNotFound",
    "ModelSpec",
    "NotFound",
    "OptionsError",
    "OutOfMemory",
    "PayloadTooLarge",
    "PermissionDenied",
    "PluginError",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "QueueFull",
    "RateLimited",
    "RunContext",
    "SystemMessage",
    "TextChunk",
    "ToolCallDelta",
    "ToolMessage",
    "Unavailable",
    "UnsupportedParameter",
    "UserMessage",
    "VisionScores",
    "WorkerCrashed",
    "hookimpl",
]
