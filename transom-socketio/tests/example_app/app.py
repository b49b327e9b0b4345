"""The composition root: ``make_app(settings)`` builds the services and lists the routes.

The services are one typed ``Services`` (a handler's ``self.services``); the registry
holds the same objects under the transom names, so that action modules and your own
code reach the message client as ``registry['transomMsgClient']``. Add a route to
``routes`` below; add an entity in ``models/``; add an event that sockets may send in
``events.py``.
"""

from __future__ import annotations

from pathlib import Path

from transom_socketio.app import application, standard_routes
from transom_socketio.realtime.server import socketio_route
from transom_socketio.registry import Registry
from transom_socketio.services import Services
from transom_socketio.web.application import Application
from transom_socketio.web.entities import entity_routes

from . import PROJECT_NAME, __version__, admin, auth, db
from .channels import channels
from .events import events
from .models import ACTIONS_PACKAGE, ENTITIES, INDEXES
from .pages import DemoPageHandler, ResetPageHandler, VerifyPageHandler
from .settings import Settings

HERE = Path(__file__).parent


def make_app(settings: Settings, registry: Registry | None = None) -> Application:
    # ``events``: what the app's sockets may send (events.py); ``channels``: what they may
    # subscribe to (channels.py).
    services = Services.create(
        settings,
        db.connect(settings),
        client_events=events,
        mail_templates=HERE / "mail",
        channels=channels,
    )
    routes = [
        (r"/", DemoPageHandler),
        # The links of the account mails (PUBLIC_URL/verify?token=..., /reset?token=...).
        (r"/verify", VerifyPageHandler),
        (r"/reset", ResetPageHandler),
        *standard_routes(services),
        (r"/api/v1/user/signup", auth.SignupHandler),
        (r"/api/v1/user/login", auth.LoginHandler),
        (r"/api/v1/user/logout", auth.LogoutHandler),
        (r"/api/v1/user/me", auth.MeHandler),
        (r"/api/v1/user/sockettoken", auth.SocketTokenHandler),
        (r"/api/v1/user/verify", auth.VerifyEmailHandler),
        (r"/api/v1/user/verify/resend", auth.ResendVerificationHandler),
        (r"/api/v1/user/forgot", auth.ForgotPasswordHandler),
        (r"/api/v1/user/reset", auth.ResetPasswordHandler),
        (r"/api/v1/user/password", auth.ChangePasswordHandler),
        (r"/api/v1/admin/users", admin.UsersHandler),
        (r"/api/v1/admin/users/(?P<user_id>[^/]+)/groups", admin.UserGroupsHandler),
        (r"/api/v1/admin/users/(?P<user_id>[^/]+)/logout", admin.UserLogoutHandler),
        *entity_routes(ENTITIES, ACTIONS_PACKAGE),
        # Socket.IO at /socket.io/: the handshake consumes a one-time socket token.
        socketio_route(services.socket_server),
    ]
    return application(
        services,
        routes,
        indexes=[*db.INDEXES, *INDEXES],
        template_path=HERE / "templates",
        static_path=HERE / "static",
        registry=registry,
        api_title=f"{PROJECT_NAME} API",
        api_version=__version__,
    )
