"""The dashboard permission, the "Compliance officers" group holding it, and the log's indexes.

The group holds `compliance.view_dashboard` only. Reading documents (`vault.read_any_document`)
stays a grant to a person, never to the group: reading the log does not need the documents, and a
per-user grant is what the access log records (permission-grant) and what an auditor can review.
"""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

GROUP = "Compliance officers"
PERMISSION = ("view_dashboard", "Can use the compliance dashboard")


def officers_group_create(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Create the group and its permission (post_migrate has not created the permission yet)."""
    alias = schema_editor.connection.alias
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    group_model = apps.get_model("auth", "Group")
    content_type, _ = content_type_model.objects.db_manager(alias).get_or_create(
        app_label="compliance", model="accessevent"
    )
    permission, _ = permission_model.objects.db_manager(alias).get_or_create(
        content_type=content_type, codename=PERMISSION[0], defaults={"name": PERMISSION[1]}
    )
    group, _ = group_model.objects.db_manager(alias).get_or_create(name=GROUP)
    group.permissions.add(permission)


def officers_group_remove(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Remove the group; the permission goes with the model options it belongs to."""
    alias = schema_editor.connection.alias
    apps.get_model("auth", "Group").objects.db_manager(alias).filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("compliance", "0003_chain_check"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="accessevent",
            options={
                "base_manager_name": "objects",
                "ordering": ["-seq"],
                "permissions": [PERMISSION],
            },
        ),
        migrations.AddIndex(
            model_name="accessevent",
            index=models.Index(
                fields=["actor_username", "when"], name="compliance_ae_username_when"
            ),
        ),
        migrations.AddIndex(
            model_name="accessevent",
            index=models.Index(fields=["action", "when"], name="compliance_ae_action_when"),
        ),
        migrations.AddIndex(
            model_name="accessevent",
            index=models.Index(fields=["client_ip", "when"], name="compliance_ae_ip_when"),
        ),
        migrations.AddIndex(
            model_name="accessevent",
            index=models.Index(fields=["key_id", "when"], name="compliance_ae_key_when"),
        ),
        migrations.AddIndex(
            model_name="accessevent",
            index=models.Index(
                condition=models.Q(("staff_read", True)),
                fields=["when"],
                name="compliance_ae_staff_when",
            ),
        ),
        migrations.RunPython(officers_group_create, officers_group_remove),
    ]
