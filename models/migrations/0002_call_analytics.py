from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Call',
            name='carrier_lag',
            field=fields.FloatField(null=True),
        ),
        ops.AddField(
            model_name='Call',
            name='jitter_mean',
            field=fields.FloatField(null=True),
        ),
        ops.AddField(
            model_name='Trunk',
            name='webhook_events',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
